"""Repeated numeric results as a trend chart (an inline SVG).

The chart is read, not admired: its y axis is labelled with the unit and the
values at its ends, its x axis with the dates of the first and last results,
each point with its value, and the reference range is a shaded band.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from sharedrecord.presentation.entries import ShownEntry


@dataclass(frozen=True)
class TrendPoint:
    x: float
    y: float
    value: float
    when: datetime.datetime
    when_shown: str
    shown: str  # the result as the page shows it: the digits sent, and the unit
    abnormal: bool
    entry: str = ""  # the result's public id: a page that shows its value names it

    @property
    def label_y(self) -> str:
        """Where the point's value is written: above it, or below it near the top."""
        return f"{self.y - 8:.1f}" if self.y > 24 else f"{self.y + 16:.1f}"

    @property
    def value_text(self) -> str:
        """The value written beside the point: the result's digits as sent, without its unit."""
        return self.shown.split(" ", 1)[0] if self.shown else _number(self.value)

    @property
    def cx(self) -> str:
        """x in the SVG, as the template writes it (formatted here: cheaper than a filter)."""
        return f"{self.x:.1f}"

    @property
    def cy(self) -> str:
        """y in the SVG, as the template writes it."""
        return f"{self.y:.1f}"


@dataclass(frozen=True)
class Trend:
    """An inline SVG's worth of one repeated numeric result (the summary draws a sparkline)."""

    title: str
    unit: str
    points: tuple[TrendPoint, ...]
    band: tuple[float, float] | None  # the reference range: y of its top, and its height
    low: float
    high: float
    width: int = 480
    height: int = 160
    y_ticks: tuple[tuple[str, str], ...] = ()  # (y, the value written there)
    x_ticks: tuple[tuple[str, str, str], ...] = ()  # (x, text-anchor, the date written there)
    code: str = ""  # the test's code: the results page filters by it

    @property
    def axis_left(self) -> int:
        return LEFT

    @property
    def axis_bottom(self) -> int:
        return self.height - BOTTOM

    @property
    def axis_right(self) -> int:
        return self.width - RIGHT

    @property
    def band_width(self) -> int:
        return self.width - RIGHT - LEFT

    @property
    def middle(self) -> int:
        return (LEFT + self.width - RIGHT) // 2

    @property
    def band_shown(self) -> tuple[str, str] | None:
        """The band's y and height, as the template writes them."""
        return (f"{self.band[0]:.1f}", f"{self.band[1]:.1f}") if self.band else None

    @property
    def first_day(self) -> str:
        """The day of the first result, as the x axis writes it ("26 Oct 2025")."""
        return self.x_ticks[0][2] if self.x_ticks else ""

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def svg(self) -> SafeString:
        """The results page's chart, written here rather than by template loops.

        A page of 100 results draws up to 40 charts: a template variable per
        point, tick and label took about 15 ms a page. Every value is escaped
        (format_html), as the template would.
        """
        band = (
            format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" fill="#d8e8d8" class="sr-band">'
                "<title>Reference range</title></rect>",
                LEFT, self.band_shown[0], self.band_width, self.band_shown[1],
            )
            if self.band_shown
            else ""
        )  # fmt: skip
        y_ticks = format_html_join(
            "", '<text class="sr-tick sr-tick--y" x="{}" y="{}" text-anchor="end">{}</text>',
            ((LEFT - 6, y, label) for y, label in self.y_ticks),
        )  # fmt: skip
        x_ticks = format_html_join(
            "", '<text class="sr-tick sr-tick--x" x="{}" y="{}" text-anchor="{}">{}</text>',
            ((x, self.axis_bottom + 16, anchor, label) for x, anchor, label in self.x_ticks),
        )  # fmt: skip
        points = format_html_join(
            "",
            '<circle cx="{}" cy="{}" r="4" fill="{}"/><text class="sr-point-value" x="{}" '
            'y="{}" text-anchor="middle" font-size="11" fill="#212b32">{}</text>',
            (
                (p.cx, p.cy, "#d5281b" if p.abnormal else "#005eb8", p.cx, p.label_y,
                 p.value_text)
                for p in self.points
            ),
        )  # fmt: skip
        return format_html(
            '<svg role="img" aria-label="Trend of {}: {}" viewBox="0 0 {} {}" width="100%" '
            'class="sr-trend-chart" focusable="false">\n'
            "    {}\n"
            '    <g class="sr-axis" stroke="#4c6272" stroke-width="1">\n'
            '      <line x1="{}" y1="8" x2="{}" y2="{}"/>\n'
            '      <line x1="{}" y1="{}" x2="{}" y2="{}"/>\n'
            "    </g>\n"
            '    <g class="sr-axis-labels" font-size="12" fill="#212b32">\n'
            '      <text class="sr-axis-title sr-axis-title--y" x="4" y="12">{}</text>\n'
            "      {}\n      {}\n"
            '      <text class="sr-axis-title sr-axis-title--x" x="{}" y="{}" '
            'text-anchor="middle">Date taken</text>\n'
            "    </g>\n"
            '    <polyline points="{}" fill="none" stroke="#005eb8" stroke-width="2"/>\n'
            "    {}\n"
            "  </svg>",
            self.title, ", ".join(f"{p.shown} on {p.when_shown}" for p in self.points),
            self.width, self.height,
            band,
            LEFT, LEFT, self.axis_bottom,
            LEFT, self.axis_bottom, self.axis_right, self.axis_bottom,
            self.unit or "value",
            y_ticks, x_ticks,
            self.middle, self.height - 4,
            self.polyline,
            points,
        )  # fmt: skip


# Room around the plot for the axes' labels.
LEFT, RIGHT, TOP, BOTTOM = 56, 24, 30, 40


def _number(value: float) -> str:
    return f"{value:.6g}"


def trends_of(results: list[ShownEntry], *, width: int = 480, height: int = 200) -> list[Trend]:
    """One trend per result code with two or more numeric values, oldest to newest."""
    by_code: dict[tuple[str, str], list[ShownEntry]] = {}
    for item in results:
        if item.value is not None and item.when is not None and item.code:
            by_code.setdefault((item.code, item.unit), []).append(item)
    trends = []
    for (code, unit), items in sorted(by_code.items()):
        if len(items) < 2:
            continue
        items.sort(key=lambda i: (i.when, i.public_id))
        values = [i.value for i in items if i.value is not None]
        ref = items[-1].reference
        limits = (ref.low, ref.high) if ref else ()
        bounds = [*values, *(v for v in limits if v is not None)]
        low, high = min(bounds), max(bounds)
        span = (high - low) or 1.0
        first = items[0].when or datetime.datetime.now(datetime.UTC)
        last = items[-1].when or first
        seconds = (last - first).total_seconds() or 1.0

        def y_of(v: float, low: float = low, span: float = span) -> float:
            return height - BOTTOM - (v - low) / span * (height - TOP - BOTTOM)

        points = tuple(
            TrendPoint(
                x=LEFT + ((i.when - first).total_seconds() / seconds) * (width - LEFT - RIGHT),
                y=y_of(i.value),
                value=i.value,
                when=i.when,
                when_shown=i.when_shown,
                shown=i.result,
                abnormal=i.abnormal,
                entry=i.public_id,
            )
            for i in items
            if i.when is not None and i.value is not None
        )
        band = None
        if ref and ref.low is not None and ref.high is not None:
            band = (y_of(ref.high), y_of(ref.low) - y_of(ref.high))
        ticks = sorted({low, high, *(v for v in limits if v is not None)})
        y_ticks = tuple((f"{y_of(v) + 4:.1f}", _number(v)) for v in ticks)
        dates = [p.when_shown.rsplit(" ", 1)[0] if ":" in p.when_shown else p.when_shown
                 for p in (points[0], points[-1])]  # fmt: skip
        x_ticks = (
            (f"{LEFT:.1f}", "start", dates[0]),
            (f"{width - RIGHT:.1f}", "end", dates[1]),
        )
        trends.append(
            Trend(
                items[-1].title,
                unit,
                points,
                band,
                low,
                high,
                width,
                height,
                y_ticks,
                x_ticks,
                code,
            )
        )
    return trends
