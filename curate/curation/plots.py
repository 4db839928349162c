"""Matplotlib figures as inline SVG text, byte-for-byte deterministic, for the HTML reports.

Both reports (the coverage report in `curate.curation.report` and the diagnosis page in
`curate.diagnostics.report`) promise "same input, same bytes", which matplotlib's SVG keeps only with a
fixed `svg.hashsalt` (element ids are otherwise random) and no creation date in the metadata.
Text stays text (`svg.fonttype: none`), so the pages embed no glyph outlines. Figures are built
without pyplot: no backend switch, no global figure registry to clean up.
"""

from __future__ import annotations

import io

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

SETTINGS = {"svg.fonttype": "none", "svg.hashsalt": "curate-report", "font.size": 9}


def new_figure(columns: int = 1, rows: int = 1, panel: tuple[float, float] = (4.6, 3.4)) -> tuple[Figure, list[Axes]]:
    """A figure of `rows` x `columns` panels, each `panel` inches (width, height), and its axes in row order."""
    matplotlib.rcParams.update(SETTINGS)
    figure = Figure(figsize=(panel[0] * columns, panel[1] * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    return figure, list(axes.flat)


def to_svg(figure: Figure) -> str:
    """The figure as an `<svg>` element (no XML prolog), laid out tightly, leaving room for a figure legend."""
    buffer = io.StringIO()
    figure.tight_layout(rect=(0, 0, 1, 0.92) if figure.legends else None)
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]
