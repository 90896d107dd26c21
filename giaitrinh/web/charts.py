"""Bar charts as plain geometry for inline SVG drawn by the server (CSP-safe: no script, no style).

Templates draw what these return with ``<rect>`` and ``<text>`` (``reports/charts.html``);
colours are CSS classes in ``static/app.css``.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Segment:
    x: float
    width: float
    value: float
    css: str
    label: str = ""


@dataclass
class Bar:
    label: str
    y: float
    segments: list[Segment] = field(default_factory=list)
    total: float = 0
    text: str = ""


@dataclass
class Chart:
    width: int
    height: int
    label_width: int
    bar_height: int
    bars: list[Bar]
    legend: list[tuple[str, str]]


def bars(rows: list[tuple[str, list[tuple]]], legend: list[tuple[str, str]] | None = None,
         width: int = 640, label_width: int = 230, bar_height: int = 22, gap: int = 8,
         unit: str = "") -> Chart:
    """Horizontal bars, one per (label, [(value, css class[, what it counts]), ...]); several values stack."""
    values = [sum(part[0] or 0 for part in parts) for _, parts in rows]
    biggest = max(values, default=0) or 1
    room = width - label_width - 60
    out = []
    for index, ((label, parts), total) in enumerate(zip(rows, values)):
        y = index * (bar_height + gap)
        bar = Bar(label=label, y=y, total=total, text=_number(total) + unit)
        x = float(label_width)
        for value, css, *what in parts:
            w = room * (value or 0) / biggest
            bar.segments.append(Segment(x=round(x, 1), width=round(w, 1), value=value or 0, css=css,
                                        label=what[0] if what else ""))
            x += w
        out.append(bar)
    height = max(1, len(rows)) * (bar_height + gap)
    return Chart(width=width, height=height, label_width=label_width, bar_height=bar_height, bars=out,
                 legend=legend or [])


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
