"""Diagnostic figures for a candidate: predicted vs actual, residuals, feature importance.

Built on matplotlib's object API (no pyplot): no global figure state, no display backend.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def predicted_vs_actual(y_true: np.ndarray, y_pred: np.ndarray, title: str) -> Figure:
    fig = Figure(figsize=(5, 5), layout="tight")
    ax = fig.subplots()
    ax.scatter(y_true, y_pred, s=4, alpha=0.3)
    top = float(max(y_true.max(), y_pred.max()))
    ax.plot([0, top], [0, top], color="black", linewidth=1)
    ax.set(xlabel="actual MedHouseVal ($100k)", ylabel="predicted", title=title)
    return fig


def residuals(y_true: np.ndarray, y_pred: np.ndarray, title: str) -> Figure:
    fig = Figure(figsize=(9, 4), layout="tight")
    left, right = fig.subplots(1, 2)
    resid = y_true - y_pred
    left.scatter(y_pred, resid, s=4, alpha=0.3)
    left.axhline(0, color="black", linewidth=1)
    left.set(xlabel="predicted", ylabel="actual - predicted", title=title)
    right.hist(resid, bins=60)
    right.set(xlabel="residual", ylabel="rows", title="residual distribution")
    return fig


def feature_importance(names: list[str], means: np.ndarray, stds: np.ndarray, title: str) -> Figure:
    order = np.argsort(means)
    fig = Figure(figsize=(6, 4), layout="tight")
    ax = fig.subplots()
    ax.barh(np.array(names)[order], means[order], xerr=stds[order])
    ax.set(xlabel="permutation importance (drop in R², validation)", title=title)
    return fig
