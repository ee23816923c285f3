"""Inline SVG charts, drawn here in Python: no script, no font or file fetched, so the page
they sit in reads the same offline. Every label is escaped (agent and tier names are data).

Three kinds: grouped bars (a value per category and series, negative values below a zero
line), lines over time (gaps where a bucket has no value), and a cumulative curve on the unit
square (the Pareto view). Each takes a value formatter for its axis and labels.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from html import escape

__all__ = ["PALETTE", "Series", "bars", "curve", "lines"]

# Distinguishable in colour and in grey (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000")
Series = tuple[str, Sequence[float | None]]
Fmt = Callable[[float], str]

W, H = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 34, 58


def _text(x: float, y: float, label: str, *, anchor: str = "middle", size: int = 11,
          extra: str = "") -> str:  # fmt: skip
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}"{extra}>'
        f"{escape(label)}</text>"
    )


def _frame(title: str, body: list[str], legend: Sequence[str]) -> str:
    keys = []
    for i, name in enumerate(legend):
        x = LEFT + i * 110
        keys.append(f'<rect x="{x}" y="{H - 16}" width="10" height="10" fill="{_color(i)}"/>')
        keys.append(_text(x + 14, H - 7, name[:14], anchor="start"))
    return (
        f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="{escape(title)}" font-family="sans-serif">'
        + _text(W / 2, 18, title, size=13, extra=' font-weight="bold"')
        + "".join(body)
        + "".join(keys)
        + "</svg>"
    )


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _scale(low: float, high: float) -> Callable[[float], float]:
    span = (high - low) or 1.0
    return lambda v: TOP + (H - TOP - BOTTOM) * (1 - (v - low) / span)


def _axis(low: float, high: float, fmt: Fmt, y: Callable[[float], float]) -> list[str]:
    out = []
    for i in range(5):
        v = low + (high - low) * i / 4
        out.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
        )
        out.append(_text(LEFT - 6, y(v) + 4, fmt(v), anchor="end", size=10))
    return out


def _empty(title: str) -> str:
    return _frame(title, [_text(W / 2, H / 2, "no data")], [])


def bars(title: str, categories: Sequence[str], series: Sequence[Series], fmt: Fmt,
         *, low: float = 0.0, high: float | None = None) -> str:  # fmt: skip
    """Grouped bars: one group per category, one bar per series."""
    values = [v for _, vs in series for v in vs if v is not None]
    if not categories or not values:
        return _empty(title)
    low = min(low, *values)
    top = max(values) if high is None else max(high, *values)
    top = top if top > low else low + 1
    y = _scale(low, top)
    body = _axis(low, top, fmt, y)
    slot = (W - LEFT - RIGHT) / len(categories)
    width = slot * 0.8 / len(series)
    for c, category in enumerate(categories):
        x0 = LEFT + c * slot + slot * 0.1
        for s, (name, vs) in enumerate(series):
            v = vs[c]
            if v is None:
                continue
            y_top, y_base = sorted((y(v), y(max(low, 0.0))))
            x = x0 + s * width
            body.append(
                f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{width * 0.9:.1f}" '
                f'height="{max(y_base - y_top, 0.5):.1f}" fill="{_color(s)}">'
                f"<title>{escape(f'{category}, {name}: {fmt(v)}')}</title></rect>"
            )
        body.append(_text(LEFT + c * slot + slot / 2, H - BOTTOM + 16, category[:18]))
    if low < 0:
        zero = y(0.0)
        body.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#555"/>'
        )
    return _frame(title, body, [name for name, _ in series] if len(series) > 1 else [])


def _path(points: Sequence[tuple[float, float] | None]) -> str:
    """An SVG path through the points, lifting the pen over gaps (None)."""
    out, pen = [], "M"
    for p in points:
        if p is None:
            pen = "M"
            continue
        out.append(f"{pen}{p[0]:.1f},{p[1]:.1f}")
        pen = "L"
    return " ".join(out)


def lines(title: str, labels: Sequence[str], series: Sequence[Series], fmt: Fmt) -> str:
    """One line per series over ``labels`` (time buckets); a dot where a value stands alone."""
    values = [v for _, vs in series for v in vs if v is not None]
    if not labels or not values:
        return _empty(title)
    top = max(values) or 1.0
    y = _scale(0.0, top)
    body = _axis(0.0, top, fmt, y)
    step = (W - LEFT - RIGHT) / max(len(labels) - 1, 1)

    def x(i: int) -> float:
        return LEFT + i * step if len(labels) > 1 else (W + LEFT - RIGHT) / 2

    every = max(1, -(-len(labels) // 8))
    for i, label in enumerate(labels):
        if i % every == 0:
            body.append(_text(x(i), H - BOTTOM + 16, label, size=10))
    for s, (name, vs) in enumerate(series):
        points = [None if v is None else (x(i), y(v)) for i, v in enumerate(vs)]
        body.append(
            f'<path d="{_path(points)}" fill="none" stroke="{_color(s)}" stroke-width="2"/>'
        )
        for i, p in enumerate(points):
            if p is not None:
                tip = escape(f"{name} {labels[i]}: {fmt(vs[i] or 0.0)}")
                body.append(
                    f'<circle cx="{p[0]:.1f}" cy="{p[1]:.1f}" r="2.5" fill="{_color(s)}">'
                    f"<title>{tip}</title></circle>"
                )
    return _frame(title, body, [name for name, _ in series])


def curve(title: str, points: Sequence[tuple[float, float]], mark_x: float) -> str:
    """A cumulative share curve on [0, 1] x [0, 1], the diagonal (equal shares) for
    reference, and a marker at ``mark_x`` with the curve's value there."""
    if len(points) < 2:
        return _empty(title)
    y = _scale(0.0, 1.0)

    def x(v: float) -> float:
        return LEFT + (W - LEFT - RIGHT) * v

    def pct(v: float) -> str:
        return f"{v:.0%}"

    body = _axis(0.0, 1.0, pct, y)
    for i in range(5):
        body.append(_text(x(i / 4), H - BOTTOM + 16, pct(i / 4), size=10))
    body.append(
        f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" '
        'stroke="#999" stroke-dasharray="4 3"/>'
    )
    body.append(
        f'<path d="{_path([(x(a), y(b)) for a, b in points])}" fill="none" '
        f'stroke="{_color(0)}" stroke-width="2"/>'
    )
    at = _interpolate(points, mark_x)
    body.append(
        f'<line x1="{x(mark_x):.1f}" y1="{y(0):.1f}" x2="{x(mark_x):.1f}" y2="{y(at):.1f}" '
        f'stroke="{_color(5)}"/>'
    )
    body.append(_text(x(mark_x) + 6, y(at) + 14, f"top {pct(mark_x)}: {pct(at)}",
                      anchor="start"))  # fmt: skip
    body.append(_text(W / 2, H - BOTTOM + 32, "share of customers (by 12-month spend)", size=10))
    return _frame(title, body, [])


def _interpolate(points: Sequence[tuple[float, float]], at: float) -> float:
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x0 <= at <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (at - x0) / (x1 - x0)
    return points[-1][1]
