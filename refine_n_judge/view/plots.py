"""Small bar charts as inline SVG, drawn on the server (no JavaScript).

Every text that reaches the markup (labels, links, titles) is escaped here, and the result is
`Markup`, so templates insert it as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

LABEL_CHARS = 24
ROW = 22
BAR_COLOR = "#4c78a8"


@dataclass(frozen=True)
class Bar:
    """One bar: its label, value, an optional link (to the filtered item list) and the text
    shown at its end (the value, when not given)."""

    label: str
    value: float
    href: str | None = None
    note: str | None = None
    color: str = BAR_COLOR


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3g}"


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _linked(body: str, href: str | None, title: str) -> str:
    tip = f"<title>{escape(title)}</title>"
    if href is None:
        return f"<g>{tip}{body}</g>"
    return f'<a href="{escape(href)}">{tip}{body}</a>'


def _frame(title: str, width: int, height: int, body: list[str]) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )


def bar_chart(bars: Sequence[Bar], *, title: str, width: int = 460) -> Markup:
    """Horizontal bars, one row per bar, scaled to the largest value."""
    label_width, note_width = 170, 70
    span = width - label_width - note_width
    top = max((bar.value for bar in bars), default=0) or 1
    body: list[str] = []
    for row, bar in enumerate(bars):
        y = row * ROW
        length = max(bar.value / top * span, 1 if bar.value else 0)
        note = bar.note if bar.note is not None else _number(bar.value)
        shapes = (
            f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end">'
            f"{escape(_short(bar.label))}</text>"
            f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{ROW - 6}" '
            f'fill="{escape(bar.color)}"/>'
            f'<text x="{label_width + length + 5:.1f}" y="{y + 15}">{escape(note)}</text>'
        )
        body.append(_linked(shapes, bar.href, f"{bar.label}: {note}"))
    if not bars:
        body.append('<text x="0" y="15">nothing yet</text>')
    return _frame(title, width, max(len(bars), 1) * ROW + 4, body)


def column_chart(
    bars: Sequence[Bar], *, title: str, x_label: str, top: float | None = None
) -> Markup:
    """Vertical columns (a histogram) with their labels below and values above; `top` fixes
    the scale (1.0 for shares), otherwise the largest value sets it."""
    column, gap, plot_height, left = 34, 10, 120, 10
    width = max(left * 2 + len(bars) * (column + gap), 240)
    scale_top = top or max((bar.value for bar in bars), default=0) or 1
    body: list[str] = []
    base = plot_height + 20
    for i, bar in enumerate(bars):
        x = left + i * (column + gap)
        height = max(bar.value / scale_top * plot_height, 1 if bar.value else 0)
        note = bar.note if bar.note is not None else _number(bar.value)
        centre = x + column / 2
        shapes = (
            f'<rect x="{x}" y="{base - height:.1f}" width="{column}" height="{height:.1f}" '
            f'fill="{escape(bar.color)}"/>'
            f'<text x="{centre}" y="{base - height - 4:.1f}" text-anchor="middle">'
            f"{escape(note)}</text>"
            f'<text x="{centre}" y="{base + 15}" text-anchor="middle">'
            f"{escape(_short(bar.label))}</text>"
        )
        body.append(_linked(shapes, bar.href, f"{x_label} {bar.label}: {note}"))
    if not bars:
        body.append(f'<text x="{left}" y="{base}">nothing yet</text>')
    body.append(
        f'<line x1="{left - 4}" y1="{base}" x2="{width - left}" y2="{base}" stroke="#888"/>'
        f'<text x="{width / 2}" y="{base + 33}" text-anchor="middle" class="axis">'
        f"{escape(x_label)}</text>"
    )
    return _frame(title, width, base + 40, body)
