"""Repeated numeric results as a trend chart (an inline SVG drawn by the template)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

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
    """An inline SVG's worth of one repeated numeric result (drawn by the template)."""

    title: str
    unit: str
    points: tuple[TrendPoint, ...]
    band: tuple[float, float] | None  # the reference range: y of its top, and its height
    low: float
    high: float
    width: int = 480
    height: int = 160

    @property
    def band_shown(self) -> tuple[str, str] | None:
        """The band's y and height, as the template writes them."""
        return (f"{self.band[0]:.1f}", f"{self.band[1]:.1f}") if self.band else None

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


def trends_of(results: list[ShownEntry], *, width: int = 480, height: int = 160) -> list[Trend]:
    """One trend per result code with two or more numeric values, oldest to newest."""
    by_code: dict[tuple[str, str], list[ShownEntry]] = {}
    for item in results:
        if item.value is not None and item.when is not None and item.code:
            by_code.setdefault((item.code, item.unit), []).append(item)
    trends = []
    pad = 16.0
    for (_, unit), items in sorted(by_code.items()):
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
            return height - pad - (v - low) / span * (height - 2 * pad)

        points = tuple(
            TrendPoint(
                x=pad + ((i.when - first).total_seconds() / seconds) * (width - 2 * pad),
                y=y_of(i.value),
                value=i.value,
                when=i.when,
                when_shown=i.when_shown,
                shown=i.result,
                abnormal=i.abnormal,
            )
            for i in items
            if i.when is not None and i.value is not None
        )
        band = None
        if ref and ref.low is not None and ref.high is not None:
            band = (y_of(ref.high), y_of(ref.low) - y_of(ref.high))
        trends.append(Trend(items[-1].title, unit, points, band, low, high, width, height))
    return trends
