"""Just enough PromQL reading for the observability tests: selectors, grouping labels, and the
"signal" of an alert (its comparisons turned into `bool` comparisons).

Not a parser: it relies on PromQL's lexical rules (strings, `{...}` matchers, `[...]` ranges)
and is checked by Prometheus itself, which evaluates every expression these helpers produce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
KEYWORDS = frozenset(
    {
        "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
        "unless", "offset", "Inf", "NaN", "inf", "nan", "atan2",
        # aggregation operators, which may stand before `by (...)` instead of `(`
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile",
    }
)  # fmt: skip
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
MATCHER = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*")


@dataclass(frozen=True)
class Selector:
    metric: str
    labels: tuple[str, ...]  # names of the label matchers


def _skip_string(expr: str, i: int) -> int:
    """Index just after the string literal starting at expr[i]."""
    quote = expr[i]
    i += 1
    while i < len(expr):
        if expr[i] == "\\" and quote != "`":
            i += 2
            continue
        if expr[i] == quote:
            return i + 1
        i += 1
    raise ValueError(f"unterminated string in {expr!r}")


def _mask(expr: str) -> str:
    """`expr` with strings, comments, `{...}` and `[...]` replaced by spaces (same length)."""
    out = list(expr)
    i = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            end = _skip_string(expr, i)
            out[i:end] = " " * (end - i)
            i = end
        elif c == "#":  # a comment, to the end of the line
            end = expr.find("\n", i)
            end = len(expr) if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
        elif c in "{[":
            close = "}" if c == "{" else "]"
            j = i + 1
            while j < len(expr) and expr[j] != close:
                j = _skip_string(expr, j) if expr[j] in "\"'`" else j + 1
            out[i : j + 1] = " " * (j + 1 - i)
            i = j + 1
        else:
            i += 1
    return "".join(out)


def as_signal(expr: str) -> str:
    """Every comparison of `expr` as a `bool` comparison: the alert's condition evaluated (0/1)
    for every series it watches, instead of only the series for which it holds."""
    masked = _mask(expr)
    out = []
    i = 0
    while i < len(expr):
        op = next((o for o in COMPARISONS if masked.startswith(o, i)), None)
        if op is None:
            out.append(expr[i])
            i += 1
            continue
        out.append(op)
        i += len(op)
        if not re.match(r"\s*bool\b", masked[i:]):
            out.append(" bool")
    return "".join(out)


def selectors(expr: str) -> list[Selector]:
    """The vector selectors of `expr`: metric name and the label names it matches on."""
    masked = _mask(expr)
    found = []
    # Named selectors with matchers: NAME{...}
    for match in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", _mask_strings_and_ranges(expr)):
        start = match.end() - 1
        end = _closing_brace(expr, start)
        found.append(
            (match.start(), Selector(match.group(1), _matcher_labels(expr[start + 1 : end])))
        )
    # Bare names: identifiers that are neither functions, keywords, grouping labels nor numbers.
    without_grouping = GROUPING.sub(lambda m: " " * len(m.group(0)), masked)
    named = {pos for pos, _ in found}
    for match in IDENTIFIER.finditer(without_grouping):
        name = match.group(0)
        rest = without_grouping[match.end() :]
        if name in KEYWORDS or re.match(r"\s*\(", rest) or match.start() in named:
            continue
        if match.start() > 0 and (without_grouping[match.start() - 1].isdigit()):
            continue  # a duration or number suffix
        if re.match(r"\s*\{", expr[match.end() :]):
            continue
        found.append((match.start(), Selector(name, ())))
    return [s for _, s in sorted(found, key=lambda item: item[0])]


def grouping_labels(expr: str) -> set[str]:
    """Label names of every by/without/on/ignoring/group_left/group_right clause."""
    labels: set[str] = set()
    for match in GROUPING.finditer(_mask(expr)):
        # The clause's own text (masking does not touch parentheses).
        labels |= {label.strip() for label in match.group(2).split(",") if label.strip()}
    return labels


def _mask_strings_and_ranges(expr: str) -> str:
    out = list(expr)
    i = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            end = _skip_string(expr, i)
            out[i:end] = " " * (end - i)
            i = end
        elif c == "#":
            end = expr.find("\n", i)
            end = len(expr) if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
        elif c == "[":
            j = expr.index("]", i)
            out[i : j + 1] = " " * (j + 1 - i)
            i = j + 1
        else:
            i += 1
    return "".join(out)


def _closing_brace(expr: str, start: int) -> int:
    j = start + 1
    while expr[j] != "}":
        j = _skip_string(expr, j) if expr[j] in "\"'`" else j + 1
    return j


def _matcher_labels(body: str) -> tuple[str, ...]:
    labels = []
    i = 0
    while i < len(body):
        match = MATCHER.match(body, i)
        if match is None:
            if body[i:].strip(" ,\n") == "":
                break
            raise ValueError(f"cannot read label matchers {body!r}")
        labels.append(match.group(1))
        i = _skip_string(body, match.end())
        while i < len(body) and body[i] in " ,\n":
            i += 1
    return tuple(labels)
