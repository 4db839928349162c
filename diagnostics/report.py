"""The self-contained HTML page of a diagnosis: tables plus inline SVG plots (matplotlib).

Sections: the trajectory table (the paper's Table 1 for this series), the alpha histogram
of every checkpoint, the layer-wise profile of every module type (alpha, effective rank and,
against a base, relative change, correlation and delta effective rank; one line per
checkpoint), per-module figures of the last checkpoint, and the skipped matrices and failed
fits. The SVG is written with a fixed hash salt and no date, so the same input gives the
same page.
"""

from __future__ import annotations

import html
import io

import numpy as np

from diagnostics.summary import ALPHA_RANGE, DEFINITIONS

PROFILE_FIGURES = (
    ("alpha", "alpha", "Heavy-tail exponent; the shaded band is the well-conditioned range [2, 6]."),
    ("effective_rank", "effective rank", "Roy-Vetterli effective rank; sharp drops suggest rank collapse."),
    ("relative_change", "relative change", "||W - W_base||_F / ||W_base||_F: how far each layer moved from the base."),
    ("correlation", "correlation", "Correlation of entries with the base; near 0 means the layer was re-parametrised."),
    ("delta_effective_rank", "delta effective rank", "Effective rank minus the base's: representational restructuring."),
)
BASE_FIGURES = {"relative_change", "correlation", "delta_effective_rank"}
MAX_LEGEND_ENTRIES = 10
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1.5em 0; } figcaption { font-size: 0.9em; color: #555; }
.note { font-size: 0.9em; color: #555; }
"""


def _svg(figure) -> str:
    """A matplotlib figure as an inline SVG element (text kept as text, fixed ids, no date)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "curate-diagnose"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _colors(count: int) -> list:
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.9, max(count, 1))][:count]


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


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _trajectory_section(summary: dict) -> str:
    trajectory = summary["trajectory"]
    header = ["", *trajectory["checkpoints"], "Trend"]
    shares = [_format(s, percent=True) for s in trajectory["share_alpha_in_range"]]
    rows = [["% matrices with alpha in [2, 6]", *shares, trajectory["trend"]]]
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
        "<h2>Trajectory</h2>"
        + _table(header, rows)
        + f"<p class='note'>Trend rule: {html.escape(trajectory['trend_rule'])}.</p>"
        + _table(detail_header, details)
    )


def _histogram_section(records: list[dict], labels: list[str]) -> str:
    from matplotlib.figure import Figure

    alphas = [np.asarray([r["alpha"] for r in records if r["checkpoint"] == label and r["alpha"] is not None]) for label in labels]
    finite = np.concatenate([a for a in alphas if len(a)] or [np.array([0.0, 1.0])])
    upper = float(min(max(np.percentile(finite, 99), ALPHA_RANGE[1] + 1.0), 20.0))
    bins = np.linspace(float(min(finite.min(), ALPHA_RANGE[0]) - 0.25), upper, 40)
    columns = min(len(labels), 3)
    rows = -(-len(labels) // columns)
    figure = Figure(figsize=(4.0 * columns, 3.0 * rows))
    for index, (label, values) in enumerate(zip(labels, alphas)):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.axvspan(*ALPHA_RANGE, color="#d9ead3", zorder=0)
        axes.hist(np.clip(values, bins[0], bins[-1]), bins=bins, color="#3c78d8")
        axes.set_title(label, fontsize=10)
        axes.set_xlabel("alpha")
        axes.set_ylabel("matrices")
    figure.tight_layout()
    caption = (
        "Distribution of alpha over all analysed matrices of each checkpoint; the green band is [2, 6]. "
        "Values beyond the right edge are drawn in the last bin."
    )
    return "<h2>Alpha distribution per checkpoint</h2>" + _figure(_svg(figure), caption)


def _profile_figure(module: str, records: list[dict], labels: list[str], keys: list[tuple]) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2 * len(keys), 3.2))
    colors = _colors(len(labels))
    for index, (key, title, _) in enumerate(keys):
        axes = figure.add_subplot(1, len(keys), index + 1)
        if key == "alpha":
            axes.axhspan(*ALPHA_RANGE, color="#d9ead3", zorder=0)
        for color, label in zip(colors, labels):
            points = sorted((r["layer"], r[key]) for r in records if r["checkpoint"] == label and r.get(key) is not None)
            if points:
                layers, values = zip(*points)
                axes.plot(layers, values, marker=".", color=color, label=label)
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("layer")
        axes.set_ylabel(title)
    if len(labels) <= MAX_LEGEND_ENTRIES:
        figure.axes[0].legend(fontsize=8)
    figure.suptitle(module, fontsize=11)
    figure.tight_layout()
    notes = " ".join(note for _, _, note in keys)
    order = "" if len(labels) <= MAX_LEGEND_ENTRIES else f" Colors run from {labels[0]} (dark) to {labels[-1]} (light)."
    return _figure(_svg(figure), f"{module} across layers, one line per checkpoint. {notes}{order}")


def _profile_section(records: list[dict], labels: list[str], with_base: bool) -> str:
    keys = [k for k in PROFILE_FIGURES if with_base or k[0] not in BASE_FIGURES]
    layered = [r for r in records if r["layer"] is not None]
    modules = sorted({r["module"] for r in layered}, key=lambda m: (m.startswith("visual."), m))
    parts = [
        _profile_figure(module, [r for r in layered if r["module"] == module], labels, keys)
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
    labels = summary["trajectory"]["checkpoints"]
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
