"""Small inline-SVG charts (line profiles and histograms) for the self-contained report.

Written by hand rather than with matplotlib: a report has dozens of panels, and plain SVG
text takes milliseconds per panel, needs no fonts or backend and is byte-for-byte
deterministic.
"""

from __future__ import annotations

import html
import math

WIDTH, HEIGHT = 340, 230
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 26, 42
VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
BAND_COLOR = "#d9ead3"
BAR_COLOR = "#3c78d8"


def palette(count: int) -> list[str]:
    """`count` colors along viridis, dark to light (stopping short of its pale yellow end)."""
    colors = []
    for index in range(count):
        position = 0.85 * index / max(count - 1, 1) * (len(VIRIDIS) - 1)
        low = min(int(position), len(VIRIDIS) - 2)
        weight = position - low
        rgb = [round(a + (b - a) * weight) for a, b in zip(VIRIDIS[low], VIRIDIS[low + 1])]
        colors.append("#{:02x}{:02x}{:02x}".format(*rgb))
    return colors


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick positions (steps of 1, 2 or 5 times a power of ten) covering [low, high]."""
    raw = (high - low) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    return [round(i * step, 12) for i in range(first, math.floor(high / step + 1e-9) + 1)]


def _padded_range(values: list[float], include: tuple[float, ...] = ()) -> tuple[float, float]:
    low, high = min([*values, *include]), max([*values, *include])
    if high - low < 1e-12 * max(1.0, abs(high)):
        spread = max(abs(high) * 0.1, 0.5)
        return low - spread, high + spread
    margin = 0.05 * (high - low)
    return low - margin, high + margin


class _Frame:
    """Maps data coordinates onto the plot area and draws axes, ticks, labels and title."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.x_range, self.y_range = x_range, y_range
        self.parts: list[str] = []

    def x(self, value: float) -> float:
        low, high = self.x_range
        return LEFT + (value - low) / (high - low) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        low, high = self.y_range
        return HEIGHT - BOTTOM - (value - low) / (high - low) * (HEIGHT - TOP - BOTTOM)

    def band(self, low: float, high: float) -> None:
        top, bottom = self.y(min(high, self.y_range[1])), self.y(max(low, self.y_range[0]))
        if bottom > top:
            self.parts.append(
                f'<rect x="{LEFT}" y="{top:.1f}" width="{WIDTH - LEFT - RIGHT}" height="{bottom - top:.1f}" fill="{BAND_COLOR}"/>'
            )

    def vertical_band(self, low: float, high: float) -> None:
        left, right = self.x(max(low, self.x_range[0])), self.x(min(high, self.x_range[1]))
        if right > left:
            self.parts.append(
                f'<rect x="{left:.1f}" y="{TOP}" width="{right - left:.1f}" height="{HEIGHT - TOP - BOTTOM}" fill="{BAND_COLOR}"/>'
            )

    def svg(self, title: str, x_label: str, y_label: str, integer_x: bool = False) -> str:
        axes = [
            f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" stroke="#444"/>',
            f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#444"/>',
        ]
        for tick in nice_ticks(*self.x_range):
            if integer_x and tick != int(tick):
                continue
            x = self.x(tick)
            axes.append(f'<line x1="{x:.1f}" y1="{HEIGHT - BOTTOM}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM + 4}" stroke="#444"/>')
            axes.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 15}" text-anchor="middle">{tick:.6g}</text>')
        for tick in nice_ticks(*self.y_range):
            y = self.y(tick)
            axes.append(f'<line x1="{LEFT - 4}" y1="{y:.1f}" x2="{LEFT}" y2="{y:.1f}" stroke="#444"/>')
            axes.append(f'<text x="{LEFT - 6}" y="{y + 3:.1f}" text-anchor="end">{tick:.6g}</text>')
        middle_x, middle_y = (LEFT + WIDTH - RIGHT) / 2, (TOP + HEIGHT - BOTTOM) / 2
        labels = [
            f'<text x="{WIDTH / 2:.1f}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{html.escape(title)}</text>',
            f'<text x="{middle_x:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{html.escape(x_label)}</text>',
            f'<text x="14" y="{middle_y:.1f}" text-anchor="middle" transform="rotate(-90 14 {middle_y:.1f})">{html.escape(y_label)}</text>',
        ]
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'font-family="sans-serif" font-size="11">{"".join(self.parts + axes + labels)}</svg>'
        )


def line_chart(
    series: list[tuple[str, list[tuple[float, float]]]],
    title: str,
    x_label: str,
    y_label: str,
    band: tuple[float, float] | None = None,
) -> str:
    """One polyline (with point markers) per (color, points) series; `band` shades a y range."""
    points = [p for _, line in series for p in line if math.isfinite(p[1])]
    if not points:
        return _Frame((0.0, 1.0), (0.0, 1.0)).svg(f"{title} (no data)", x_label, y_label)
    frame = _Frame(_padded_range([p[0] for p in points]), _padded_range([p[1] for p in points]))
    if band is not None:
        frame.band(*band)
    for color, line in series:
        finite = [(frame.x(x), frame.y(y)) for x, y in line if math.isfinite(y)]
        if len(finite) > 1:
            coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in finite)
            frame.parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        frame.parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{color}"/>' for x, y in finite)
    return frame.svg(title, x_label, y_label, integer_x=True)


def histogram(
    counts: list[int], edges: list[float], title: str, x_label: str, y_label: str, band: tuple[float, float] | None = None
) -> str:
    """Bars of `counts` over consecutive `edges`; `band` shades an x range."""
    frame = _Frame((edges[0], edges[-1]), (0.0, max(max(counts, default=0), 1) * 1.05))
    if band is not None:
        frame.vertical_band(*band)
    for count, left, right in zip(counts, edges, edges[1:]):
        if count:
            x, top = frame.x(left), frame.y(count)
            width = frame.x(right) - x
            frame.parts.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{max(width - 0.5, 0.5):.1f}" height="{frame.y(0) - top:.1f}" fill="{BAR_COLOR}"/>'
            )
    return frame.svg(title, x_label, y_label)
