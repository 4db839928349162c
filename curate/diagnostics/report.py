"""The self-contained HTML page of a diagnosis: tables plus inline SVG charts drawn by matplotlib.

Sections: the trajectory table (the paper's Table 1: a row per run, a column per step), the alpha histogram
of every checkpoint, the layer-wise profile of every module type (alpha, effective rank and,
against a base, relative change, correlation and delta effective rank; one line per
checkpoint), per-module figures of the last checkpoint, the skipped matrices and failed
fits, and the definitions. The same input gives the same bytes (charts go through
`curate.curation.plots`, like the coverage report's).
"""

from __future__ import annotations

import html
import math

import matplotlib
import numpy as np
from matplotlib.colors import to_hex
from matplotlib.ticker import MaxNLocator

from curate.curation.plots import new_figure, to_svg
from curate.diagnostics.summary import ALPHA_RANGE, DEFINITIONS

PROFILE_FIGURES = (
    ("alpha", "alpha", "Heavy-tail exponent; the shaded band is the well-conditioned range [2, 6]."),
    ("effective_rank", "effective rank", "Roy-Vetterli effective rank; sharp drops suggest rank collapse."),
    ("relative_change", "relative change", "||W - W_base||_F / ||W_base||_F: how far each layer moved from the base."),
    ("correlation", "correlation", "Correlation of entries with the base; near 0 means the layer was re-parametrised."),
    ("delta_effective_rank", "delta effective rank", "Effective rank minus the base's: representational restructuring."),
)
BASE_FIGURES = {"relative_change", "correlation", "delta_effective_rank"}
PANEL = (3.55, 2.4)  # inches: 340 x 230 CSS pixels, the width of a .panel
BAND_COLOR = "#d9ead3"
BAR_COLOR = "#3c78d8"
LLAMA_ORDER = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1450px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0 2em 0; } figcaption { font-size: 0.9em; color: #555; max-width: 1050px; }
.panels { display: flex; flex-wrap: wrap; gap: 0.5em 1em; } .panel { width: 340px; } .panel .note { margin: 0 0 0 0.5em; }
.panel svg { width: 100%; height: auto; }
.legend { font-size: 0.85em; margin: 0.3em 0; } .key { margin-right: 1em; white-space: nowrap; }
.swatch { display: inline-block; width: 1.2em; height: 0.6em; margin-right: 0.3em; }
.note { font-size: 0.9em; color: #555; }
"""


def _format(value, percent: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{100.0 * value:.1f}" if percent else f"{value:.3g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _share_tables(rows: list[dict]) -> str:
    """Table 1: a row per run with a column per training step; checkpoints without steps get a table
    of their own with a column per checkpoint."""
    stepped = [row for row in rows if None not in row["steps"]]
    tables = []
    if stepped:
        steps = sorted({step for row in stepped for step in row["steps"]})
        body = []
        for row in stepped:
            shares = dict(zip(row["steps"], row["share_alpha_in_range"]))
            cells = [_format(shares[step], percent=True) if step in shares else "" for step in steps]
            body.append([row["series"], *cells, row["trend"]])
        tables.append(_table(["run", *(f"step {step}" for step in steps), "Trend"], body))
    for row in rows:
        if row not in stepped:
            shares = [_format(share, percent=True) for share in row["share_alpha_in_range"]]
            tables.append(_table(["", *row["checkpoints"], "Trend"], [["% in [2, 6]", *shares, row["trend"]]]))
    return "".join(tables)


def _trajectory_section(summary: dict) -> str:
    details = [
        [
            c["checkpoint"],
            str(c["matrices"]),
            str(c["fitted"]),
            str(c["failed_fits"]),
            _format(c["share_alpha_in_range"], percent=True),
            *(_format(c["alpha"][k]) for k in ("mean", "median", "std")),
            _format(c.get("effective_rank_mean")),
        ]
        for c in summary["checkpoints"]
    ]
    detail_header = ["checkpoint", "matrices", "fitted", "failed fits", "% in [2, 6]", "alpha mean", "alpha median", "alpha std", "mean effective rank"]
    return (
        "<h2>Trajectory: % of matrices with alpha in [2, 6]</h2>"
        + _share_tables(summary["trajectory"])
        + f"<p class='note'>Trend rule: {html.escape(summary['trend_rule'])}.</p>"
        + _table(detail_header, details)
    )


def _palette(count: int) -> list[str]:
    """`count` colours along viridis, dark to light, stopping short of its pale yellow end."""
    viridis = matplotlib.colormaps["viridis"]
    return [to_hex(viridis(0.85 * index / max(count - 1, 1))) for index in range(count)]


def _line_chart(
    series: list[tuple[str, list[tuple[float, float]]]], title: str, x_label: str, y_label: str, band: tuple[float, float] | None
) -> str:
    """One line with point markers per (colour, points) series over integer x; `band` shades a y range
    without widening the axis to it, so the data keep the whole height."""
    figure, (axis,) = new_figure(panel=PANEL)
    lines = [[(x, y) for x, y in points if math.isfinite(y)] for _, points in series]
    for (color, _), finite in zip(series, lines):
        if finite:
            axis.plot(*zip(*finite), color=color, marker="o", markersize=3, linewidth=1.5)
    if not any(lines):
        title = f"{title} (no data)"
    elif band is not None:
        axis.set_ylim(axis.get_ylim())
        axis.axhspan(*band, color=BAND_COLOR, zorder=0)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_title(title, fontsize="medium")
    axis.set(xlabel=x_label, ylabel=y_label)
    return to_svg(figure)


def _histogram(values: np.ndarray, edges: np.ndarray, title: str) -> str:
    """Matrices per alpha bin (values past either edge fall in the outer bins), the range [2, 6] shaded."""
    figure, (axis,) = new_figure(panel=PANEL)
    axis.axvspan(*ALPHA_RANGE, color=BAND_COLOR, zorder=0)
    counts, _, _ = axis.hist(np.clip(values, edges[0], edges[-1]), bins=edges, color=BAR_COLOR, rwidth=0.9)
    axis.set(xlim=(edges[0], edges[-1]), ylim=(0, max(counts.max(), 1) * 1.05), xlabel="alpha", ylabel="matrices")
    axis.set_title(title, fontsize="medium")
    return to_svg(figure)


def _histogram_section(records: list[dict], labels: list[str]) -> str:
    alphas = [np.asarray([r["alpha"] for r in records if r["checkpoint"] == label and r["alpha"] is not None]) for label in labels]
    pooled = np.concatenate([a for a in alphas if len(a)] or [np.array([ALPHA_RANGE[0]])])
    upper = float(min(max(np.percentile(pooled, 99), ALPHA_RANGE[1] + 1.0), 20.0))
    edges = np.linspace(float(min(pooled.min(), ALPHA_RANGE[0]) - 0.25), upper, 40)
    note = "Matrices per alpha bin; green band [2, 6]; values past the right edge fall in the last bin."
    panels = [_panel(_histogram(values, edges, label), note) for label, values in zip(labels, alphas)]
    caption = "Distribution of alpha over all analysed matrices of each checkpoint."
    return "<h2>Alpha distribution per checkpoint</h2>" + _panels(panels, caption)


def _legend(labels: list[str], colors: list[str]) -> str:
    entries = "".join(
        f"<span class='key'><span class='swatch' style='background:{color}'></span>{html.escape(label)}</span>"
        for label, color in zip(labels, colors)
    )
    return f"<div class='legend'>{entries}</div>"


def _panel(svg: str, note: str) -> str:
    return f"<div class='panel'>{svg}<p class='note'>{html.escape(note)}</p></div>"


def _panels(panels: list[str], caption: str, legend: str = "") -> str:
    return f"<figure>{legend}<div class='panels'>{''.join(panels)}</div><figcaption>{html.escape(caption)}</figcaption></figure>"


def _profile_figure(module: str, records: list[dict], labels: list[str], keys: list[tuple]) -> str:
    colors = _palette(len(labels))
    panels = []
    for key, title, note in keys:
        series = []
        for color, label in zip(colors, labels):
            points = sorted((r["layer"], r[key]) for r in records if r["checkpoint"] == label and r.get(key) is not None)
            series.append((color, points))
        chart = _line_chart(series, f"{module}: {title}", "layer", title, ALPHA_RANGE if key == "alpha" else None)
        panels.append(_panel(chart, note))
    return _panels(panels, f"{module} across layers, one line per checkpoint (legend above).", _legend(labels, colors))


def _module_order(module: str) -> tuple:
    """Decoder attention and MLP projections in forward order first, then the rest, vision tower last."""
    known = LLAMA_ORDER.index(module) if module in LLAMA_ORDER else len(LLAMA_ORDER)
    return (module.startswith("visual."), known, module)


def _profile_section(records: list[dict], labels: list[str], with_base: bool) -> str:
    keys = [k for k in PROFILE_FIGURES if with_base or k[0] not in BASE_FIGURES]
    layered = [r for r in records if r["layer"] is not None]
    modules = sorted({r["module"] for r in layered}, key=_module_order)
    parts = [
        f"<h3>{html.escape(module)}</h3>" + _profile_figure(module, [r for r in layered if r["module"] == module], labels, keys)
        for module in modules
    ]
    return "<h2>Layer-wise profiles per module type</h2>" + "".join(parts)


def _modules_section(summary: dict, with_base: bool) -> str:
    last = summary["checkpoints"][-1]
    header = ["module", "matrices", "failed fits", "% in [2, 6]", "alpha mean", "alpha std", "mean effective rank"]
    if with_base:
        header += ["mean relative change", "mean correlation", "change variance"]
    rows = []
    for module, figures in last["modules"].items():
        row = [
            module,
            str(figures["matrices"]),
            str(figures["failed_fits"]),
            _format(figures["share_alpha_in_range"], percent=True),
            _format(figures["alpha"]["mean"]),
            _format(figures["alpha"]["std"]),
            _format(figures.get("effective_rank_mean")),
        ]
        if with_base:
            row += [_format(figures.get(k)) for k in ("relative_change_mean", "correlation_mean", "change_variance")]
        rows.append(row)
    return f"<h2>Per module type ({html.escape(last['checkpoint'])})</h2>" + _table(header, rows)


def _lists_section(records: list[dict], summary: dict) -> str:
    failed = [[r["checkpoint"], r["name"], r["alpha_status"]] for r in records if r["alpha"] is None]
    skipped = [[s["checkpoint"], s["name"], "x".join(map(str, s["shape"])), s["reason"]] for s in summary["skipped"]]
    parts = ["<h2>Failed fits and skipped matrices</h2>"]
    parts.append(_table(["checkpoint", "matrix", "why the fit failed"], failed) if failed else "<p>No failed fits.</p>")
    parts.append(_table(["checkpoint", "tensor", "shape", "why skipped"], skipped) if skipped else "<p>Nothing skipped.</p>")
    return "".join(parts)


def _definitions_section() -> str:
    rows = [[name, text] for name, text in DEFINITIONS.items()]
    return "<h2>Definitions</h2>" + _table(["figure", "definition"], rows)


def render_report(records: list[dict], summary: dict) -> str:
    """The whole HTML page as a string."""
    labels = [c["checkpoint"] for c in summary["checkpoints"]]
    with_base = summary["base"] is not None
    base = f"; compared with base {html.escape(summary['base'])}" if with_base else ""
    intro = (
        f"<p>{len(labels)} checkpoint(s), {len(records)} matrix analyses{base}. "
        "Effective rank is Roy and Vetterli's (exp of the entropy of the normalised singular values).</p>"
    )
    body = (
        _trajectory_section(summary)
        + (_histogram_section(records, labels) if records else "")
        + (_profile_section(records, labels, with_base) if records else "")
        + _modules_section(summary, with_base)
        + _lists_section(records, summary)
        + _definitions_section()
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>curate diagnose</title>"
        f"<style>{STYLE}</style></head><body><h1>Parameter-space diagnostics</h1>{intro}{body}</body></html>\n"
    )
