"""The experiment's report: one self-contained HTML page drawn from `summary.json` alone.

Regimes side by side, each in one colour throughout: the verdict table, the paper's Table 1,
the final alpha histogram (Figure 1), layer-wise alpha of v_proj and up_proj (Figures 2 and
7), layer-wise relative change and delta effective rank with the change variance of every
module type (Figure 3), held-out loss over training (overall and per slice), and the builds'
coverage statistics. Charts are inline SVG from `curate.curation.plots`, so the same summary gives
the same bytes; the coverage report's script marks each chart once the browser drew it.
"""

from __future__ import annotations

import html
import math

import numpy as np

from curate.curation.plots import new_figure, to_svg
from curate.curation.report import PALETTE, RENDER_CHECK, STYLE

PANEL = (4.2, 3.0)
MODULES = ("self_attn.v_proj", "mlp.up_proj")
MAX_SLICES = 6
BAND_COLOR = "#d9ead3"
EXTRA_STYLE = ".seen { color: #1a7f37; font-weight: 600; } .not-seen { color: #b42318; font-weight: 600; } .nm { color: #777; }"


def _colours(summary: dict) -> dict[str, str]:
    return {regime: PALETTE[index % len(PALETTE)] for index, regime in enumerate(summary["regimes"])}


def _number(value, pattern: str = "{:.3g}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return pattern.format(value)


def _table(header: list[str], rows: list[list[str]], escape: bool = True) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    cell = html.escape if escape else str
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(number: int, title: str, svg: str, caption: str) -> str:
    return (f'<h3>{html.escape(title)}</h3><figure class="plot" id="plot-{number}">{svg}'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _legend(summary: dict) -> str:
    colours = _colours(summary)
    keys = "".join(f'<span class="swatch" style="background:{colours[r]}"></span>{html.escape(r)} ' for r in summary["regimes"])
    return f'<p class="legend">{keys}</p>'


def _lines(panels: list[tuple[str, dict[str, list[tuple[float, float]]]]], colours: dict, x_label: str, y_label: str,
           band: tuple[float, float] | None = None) -> str:
    """One panel per (title, {regime: points}); a line per regime."""
    figure, axes = new_figure(columns=len(panels), panel=PANEL)
    for axis, (title, series) in zip(axes, panels):
        drawn = False
        for regime, points in series.items():
            finite = [(x, y) for x, y in points if y is not None and math.isfinite(y)]
            if finite:
                axis.plot(*zip(*finite), color=colours[regime], marker="o", markersize=3, linewidth=1.4, label=regime)
                drawn = True
        if band is not None and drawn:
            axis.set_ylim(axis.get_ylim())
            axis.axhspan(*band, color=BAND_COLOR, zorder=0)
        axis.set_title(title if drawn else f"{title} (no data)", fontsize="medium")
        axis.set(xlabel=x_label, ylabel=y_label)
        if drawn:
            axis.legend(fontsize="small")
    return to_svg(figure)


def verdict_section(summary: dict) -> str:
    classes = {"seen": "seen", "not seen": "not-seen"}
    rows = []
    for verdict in summary["verdicts"]:
        status = f'<span class="{classes.get(verdict["status"], "nm")}">{html.escape(verdict["status"])}</span>'
        figures = html.escape("; ".join(f"{k}: {_plain(v)}" for k, v in verdict["figures"].items()) or "–")
        rows.append([html.escape(verdict["finding"]), status, figures, html.escape(verdict["rule"])])
    return ("<h2>Verdicts</h2>" + _table(["finding of the paper", "here", "figures", "rule"], rows, escape=False)
            + f"<p class='note'>{html.escape(summary['scale_rule'])}.</p>")


def _plain(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    return _number(value) if isinstance(value, float) or value is None else str(value)


def table1_section(summary: dict) -> str:
    runs = summary["runs"]
    longest = max((runs[r]["table1"]["fractions"] for r in summary["regimes"]), key=len)
    header = ["regime", "init", *(f"{72 * f:.0f}k/72k" for f in longest), "Trend"]
    rows = []
    for regime in summary["regimes"]:
        table = runs[regime]["table1"]
        shares = [_number(None if s is None else 100 * s, "{:.1f}") for s in table["shares"]]
        rows.append([regime, _number(100 * runs[regime]["initial_share"] if runs[regime]["initial_share"] is not None else None, "{:.1f}"),
                     *shares, table["trend"]])
    steps = "; ".join(f"{r}: steps {', '.join(map(str, runs[r]['table1']['steps']))}" for r in summary["regimes"])
    return ("<h2>Table 1: % of matrices with alpha in [2, 6] at the paper's milestones</h2>" + _table(header, rows)
            + f"<p class='note'>Milestones as fractions of the run ({html.escape(steps)}); init is iteration 0. "
            f"Trend rule: {html.escape(summary['trend_rule'])}.</p>")


def histogram_figure(summary: dict) -> str:
    colours = _colours(summary)
    regimes = summary["regimes"]
    figure, axes = new_figure(columns=len(regimes), panel=(3.2, 2.6))
    edges = np.linspace(0.0, 12.0, 25)
    for axis, regime in zip(axes, regimes):
        alphas = np.clip(np.asarray(summary["runs"][regime]["final"]["alphas"], dtype=float), edges[0], edges[-1])
        axis.axvspan(*summary["alpha_range"], color=BAND_COLOR, zorder=0)
        axis.hist(alphas, bins=edges, color=colours[regime])
        axis.set_title(f"{regime}: {summary['runs'][regime]['final']['checkpoint']}", fontsize="medium")
        axis.set(xlabel="alpha (clipped to [0, 12])", ylabel="matrices")
    return to_svg(figure)


def _layer_points(summary: dict, module: str, key: str) -> dict[str, list[tuple[float, float]]]:
    series = {}
    for regime in summary["regimes"]:
        entry = summary["runs"][regime]["final"]["layerwise"].get(module, {"layers": [], key: []})
        series[regime] = list(zip(entry["layers"], entry[key]))
    return series


def change_variance_table(summary: dict) -> str:
    modules = sorted({m for r in summary["regimes"] for m in summary["runs"][r]["final"]["change_variance"]})
    rows = [[m, *(_number(summary["runs"][r]["final"]["change_variance"].get(m)) for r in summary["regimes"])] for m in modules]
    rows.append(["mean delta effective rank (all matrices)",
                 *(_number(summary["runs"][r]["final"]["delta_effective_rank_mean"]) for r in summary["regimes"])])
    return _table(["change variance at the last checkpoint", *summary["regimes"]], rows)


def _slice_panels(summary: dict) -> list[tuple[str, dict]]:
    """Overall, then the slices with the most held-out tokens of each kind (at most MAX_SLICES per kind)."""
    first = summary["runs"][summary["regimes"][0]]["eval"]
    panels = [("overall", lambda entry: entry["overall"]["loss"])]
    if first:
        for kind, slices in first[0]["slices"].items():
            names = sorted(slices, key=lambda name: (-slices[name]["tokens"], name))[:MAX_SLICES]
            panels += [(f"{kind} = {name}", lambda entry, k=kind, n=name: entry["slices"].get(k, {}).get(n, {}).get("loss"))
                       for name in names]
    return [(title, {r: [(e["fraction"], loss(e)) for e in summary["runs"][r]["eval"]] for r in summary["regimes"]})
            for title, loss in panels]


def loss_section(summary: dict, number: int) -> tuple[str, int]:
    colours = _colours(summary)
    panels = _slice_panels(summary)
    figures = []
    for start in range(0, len(panels), 3):
        figures.append(_figure(number, "Held-out loss over training" + (" (continued)" if start else ""),
                               _lines(panels[start:start + 3], colours, "fraction of training", "loss (nats/token)"),
                               "Token-weighted cross-entropy on A's holdout, shared by every regime."))
        number += 1
    rows = []
    for title, series in panels:
        rows.append([title, *(_number(series[r][-1][1] if series[r] else None, "{:.4f}") for r in summary["regimes"])])
    first = summary["runs"][summary["regimes"][0]]["eval"]
    tokens = first[0]["overall"]["tokens"] if first else 0
    table = _table(["held-out loss at the last checkpoint", *summary["regimes"]], rows)
    field = summary["slice_field"] or "none"
    return ("<h2>Held-out loss (coverage-sensitive validation, section 7.3)</h2>"
            f"<p class='note'>{tokens:,} held-out tokens; slices: natural language, code language and {html.escape(field)}.</p>"
            + table + "".join(figures)), number


def coverage_section(summary: dict) -> str:
    regimes = summary["regimes"]
    builds = summary["builds"]
    header = ["metric", *(f"{r} {part}" for r in regimes for part in ("phase 1", "overall"))]
    rows = []
    for index, row in enumerate(builds[regimes[0]]["coverage"]):
        cells = []
        for regime in regimes:
            entry = builds[regime]["coverage"][index]
            cells += [_plain(entry["phase-1"]), _plain(entry["overall"])]
        rows.append([row["metric"], *cells])
    count_keys = sorted({k for r in regimes for k in builds[r]["counts"]})
    counts = [[k, *(str(builds[r]["counts"].get(k, "–")) for r in regimes)] for k in count_keys]
    counts += [[f"{phase} rows / tokens", *(f"{builds[r]['phases'].get(phase, {}).get('rows', '–')} / "
                                            f"{builds[r]['phases'].get(phase, {}).get('tokens', '–')}" for r in regimes)]
               for phase in ("phase-1", "phase-2")]
    return ("<h2>Builds: counts and coverage (as <code>curate report</code>)</h2>"
            + _table(["count", *regimes], counts) + _table(header, rows))


def render_experiment_report(summary: dict) -> str:
    """The whole page (deterministic: the same summary gives the same bytes)."""
    colours = _colours(summary)
    number = 1
    figures = _figure(number, "Figure 1: alpha of every matrix at the last checkpoint", histogram_figure(summary),
                      "Matrices per alpha bin; the band is the well-conditioned range [2, 6].")
    number += 1
    alpha = _lines([(m, _layer_points(summary, m, "alpha")) for m in MODULES], colours, "layer", "alpha",
                   band=tuple(summary["alpha_range"]))
    figures += _figure(number, "Figures 2 and 7: layer-wise alpha of v_proj and up_proj", alpha,
                       "Last checkpoint; the band is [2, 6].")
    number += 1
    change = _lines([(f"{m}: relative change", _layer_points(summary, m, "relative_change")) for m in MODULES]
                    + [(f"{m}: delta effective rank", _layer_points(summary, m, "delta_effective_rank")) for m in MODULES],
                    colours, "layer", "against iteration 0")
    figures += _figure(number, "Figure 3: layer-wise change and delta effective rank", change,
                       "Relative change ||W - W0||/||W0|| per layer (its spread over layers is the change variance) "
                       "and effective rank minus iteration 0's, at the last checkpoint.")
    number += 1
    losses, number = loss_section(summary, number)
    training = _table(["regime", "schedule", "lr", "min lr", "train samples", "seed"],
                      [[r, *(str(summary["runs"][r]["training"][k]) for k in ("lr_decay_style", "lr", "min_lr", "train_samples", "seed"))]
                       for r in summary["regimes"]])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>curate experiment</title>
<style>{STYLE}{EXTRA_STYLE}</style></head>
<body>
<h1>Experiment: regimes {html.escape(', '.join(summary['regimes']))}, preset {html.escape(summary['preset'])}</h1>
{_legend(summary)}
{training}
{verdict_section(summary)}
{table1_section(summary)}
<h2>Parameter-space diagnostics at the last checkpoint</h2>
{figures}
{change_variance_table(summary)}
{losses}
{coverage_section(summary)}
<script>{RENDER_CHECK}</script>
</body></html>
"""
