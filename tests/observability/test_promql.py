"""The PromQL helpers of these tests (promql.py), on the shapes the rules and panels use."""

from __future__ import annotations

from tests.observability.promql import Selector, as_signal, grouping_labels, selectors


def test_as_signal_makes_every_comparison_a_bool_comparison() -> None:
    expr = (
        'sum by (a) (rate(x_total{job="j", s=~"5.."}[5m])) > 0.05\n'
        "and on (a) y == 0 # a comment: z > 1\n"
        'or z{l!="v"} >= bool 3'
    )
    assert as_signal(expr) == (
        'sum by (a) (rate(x_total{job="j", s=~"5.."}[5m])) > bool 0.05\n'
        "and on (a) y == bool 0 # a comment: z > 1\n"
        'or z{l!="v"} >= bool 3'
    )


def test_selectors_and_grouping_labels() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le) (rate(h_bucket{job="j", le="0.1"}[$__rate_interval])))'
        '\nor ns:rec:ratio_rate5m * 0 + time() - max without (outcome) (d{o=~"a|b"} offset 5s)'
        '\n# comment mentioning not_a_metric{x="y"}\nor label_replace(u, "o", "c", "", "")'
    )
    assert selectors(expr) == [
        Selector("h_bucket", ("job", "le")),
        Selector("ns:rec:ratio_rate5m", ()),
        Selector("d", ("o",)),
        Selector("u", ()),
    ]
    assert grouping_labels(expr) == {"le", "outcome"}
