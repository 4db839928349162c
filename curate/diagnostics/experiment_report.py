"""The experiment's report: one self-contained HTML page drawn from `summary.json` alone.

Regimes side by side, each in one colour throughout: the verdict table (each part's per-seed
margins against twice their standard error, under the noise rule), the data exposure, the
paper's Table 1, the final alpha histogram (Figure 1), layer-wise alpha of v_proj and up_proj
(Figures 2 and 7), layer-wise relative change and delta effective rank with the change variance
of every module type (Figure 3), held-out loss over training (overall and per slice), and the
builds' coverage statistics. A number per regime is the mean ± sample standard deviation over
seeds (the mean alone with one seed); the histogram pools every seed's matrices and the layer-wise
figures draw the mean over seeds of each layer. Charts
are inline SVG from `curate.curation.plots`, so the same summary gives the same bytes; the
coverage report's script marks each chart once the browser drew it.
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
EXTRA_STYLE = (".seen { color: #1a7f37; font-weight: 600; } .not-seen { color: #b42318; font-weight: 600; } "
               ".within { color: #9a6700; font-weight: 600; } .nm { color: #777; }")


def _colours(summary: dict) -> dict[str, str]:
    return {regime: PALETTE[index % len(PALETTE)] for index, regime in enumerate(summary["regimes"])}


def _number(value, pattern: str = "{:.3g}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return pattern.format(value)


def _mean_sd(figures: dict, pattern: str = "{:.3g}", scale: float = 1.0) -> str:
    """A `spread` of the summary as "mean ± sd" (the mean alone when there is no sd)."""
    mean, sd = figures["mean"], figures["sd"]
    text = _number(None if mean is None else scale * mean, pattern)
    return text if sd is None else f"{text} ± {_number(scale * sd, pattern)}"


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


def _part_text(name: str, part: dict) -> str:
    margins = ", ".join(_number(m) for m in part["margins"])
    noise = "" if part["se"] is None else f", SE {_number(part['se'])}, 2 SE {_number(part['2se'])}"
    return f"{name}: per seed [{margins}], mean {_number(part['mean'])}{noise}: {part['result']}"


def verdict_section(summary: dict) -> str:
    classes = {"seen": "seen", "not seen": "not-seen", "within noise": "within"}
    rows = []
    for verdict in summary["verdicts"]:
        status = f'<span class="{classes.get(verdict["status"], "nm")}">{html.escape(verdict["status"])}</span>'
        figures = [_part_text(name, part) for name, part in verdict["parts"].items()]
        if verdict["unmeasurable_seeds"]:
            figures.append(f"not measurable on seed {', '.join(map(str, verdict['unmeasurable_seeds']))}")
        rows.append([html.escape(verdict["finding"]), status, html.escape("; ".join(figures) or "–"), html.escape(verdict["rule"])])
    return ("<h2>Verdicts</h2>"
            + _table(["finding of the paper", "here", "margins per seed (positive: the rule holds)", "rule"], rows, escape=False)
            + f"<p class='note'>{summary['seeds']} seed(s) per regime. Noise rule: {html.escape(summary['noise_rule'])}. "
            f"{html.escape(summary['scale_rule'])}.</p>")


def exposure_section(summary: dict) -> str:
    rows = []
    for regime in summary["regimes"]:
        entry = summary["exposure"][regime]
        seen = f"{_number(entry['times_seen'])} ({entry['copies']} copies)" if "copies" in entry else "–"
        rows.append([regime, _number(entry["epochs"]["phase-1"]), _number(entry["epochs"]["phase-2"]), seen])
    return ("<h2>Exposure: how many times a run met its data</h2>"
            + _table(["regime", "phase-1 epochs", "phase-2 epochs", "times each repeated document was seen"], rows)
            + "<p class='note'>Epochs are passes over a phase's packed sequences; a repeated document is seen "
            "copies x phase-1 epochs times.</p>")


def _plain(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    return _number(value) if isinstance(value, float) or value is None else str(value)


def table1_section(summary: dict) -> str:
    runs, aggregates = summary["runs"], summary["aggregate"]
    longest = max((runs[r][0]["table1"]["fractions"] for r in summary["regimes"]), key=len)
    header = ["regime", "init", *(f"{72 * f:.0f}k/72k" for f in longest), "Trend"]
    rows = []
    for regime in summary["regimes"]:
        table = aggregates[regime]["table1"]
        rows.append([regime, _mean_sd(aggregates[regime]["initial_share"], "{:.1f}", 100),
                     *(_mean_sd(s, "{:.1f}", 100) for s in table["shares"]), table["trend"]])
    steps = "; ".join(f"{r}: steps {', '.join(map(str, runs[r][0]['table1']['steps']))}" for r in summary["regimes"])
    return ("<h2>Table 1: % of matrices with alpha in [2, 6] at the paper's milestones</h2>" + _table(header, rows)
            + f"<p class='note'>Mean ± sd over seeds; milestones as fractions of the run ({html.escape(steps)}); "
            f"init is iteration 0. Trend of the mean shares; trend rule: {html.escape(summary['trend_rule'])}.</p>")


def histogram_figure(summary: dict) -> str:
    colours = _colours(summary)
    regimes = summary["regimes"]
    figure, axes = new_figure(columns=len(regimes), panel=(3.2, 2.6))
    edges = np.linspace(0.0, 12.0, 25)
    for axis, regime in zip(axes, regimes):
        runs = summary["runs"][regime]
        pooled = [alpha for run in runs for alpha in run["final"]["alphas"]]
        alphas = np.clip(np.asarray(pooled, dtype=float), edges[0], edges[-1])
        axis.axvspan(*summary["alpha_range"], color=BAND_COLOR, zorder=0)
        axis.hist(alphas, bins=edges, color=colours[regime])
        seeds = f"{len(runs)} seeds" if len(runs) > 1 else "1 seed"
        axis.set_title(f"{regime}: {runs[0]['final']['checkpoint']}, {seeds}", fontsize="medium")
        axis.set(xlabel="alpha (clipped to [0, 12])", ylabel="matrices")
    return to_svg(figure)


def _layer_points(summary: dict, module: str, key: str) -> dict[str, list[tuple[float, float]]]:
    """Per regime, (layer, mean over seeds) of a layer-wise figure at the last checkpoint; a layer's
    missing values (a matrix too small to fit) leave its mean to the seeds that have one."""
    series = {}
    for regime in summary["regimes"]:
        by_layer: dict[int, list[float]] = {}
        for run in summary["runs"][regime]:
            entry = run["final"]["layerwise"].get(module, {"layers": [], key: []})
            for layer, value in zip(entry["layers"], entry[key]):
                if value is not None and math.isfinite(value):
                    by_layer.setdefault(layer, []).append(value)
        series[regime] = [(layer, float(np.mean(values))) for layer, values in sorted(by_layer.items())]
    return series


def change_variance_table(summary: dict) -> str:
    regimes, aggregates = summary["regimes"], summary["aggregate"]
    modules = sorted({m for r in regimes for m in aggregates[r]["change_variance"]})
    rows = [[m, *(_mean_sd(aggregates[r]["change_variance"].get(m, {"mean": None, "sd": None})) for r in regimes)]
            for m in modules]
    rows.append(["mean over module types", *(_mean_sd(aggregates[r]["change_variance_mean"]) for r in regimes)])
    rows.append(["mean delta effective rank (all matrices)", *(_mean_sd(aggregates[r]["delta_effective_rank_mean"]) for r in regimes)])
    return _table(["change variance at the last checkpoint (mean ± sd over seeds)", *regimes], rows)


def alpha_table(summary: dict) -> str:
    regimes, aggregates = summary["regimes"], summary["aggregate"]
    modules = sorted({m for r in regimes for m in aggregates[r]["module_alpha_mean"]})
    rows = [[m, *(_mean_sd(aggregates[r]["module_alpha_mean"].get(m, {"mean": None, "sd": None})) for r in regimes)]
            for m in modules]
    return _table(["mean alpha at the last checkpoint (mean ± sd over seeds)", *regimes], rows)


def _slice_panels(summary: dict) -> list[tuple[str, dict]]:
    """Overall, then the slices with the most held-out tokens of each kind (at most MAX_SLICES per kind):
    (title, {regime: [(fraction, loss spread over seeds)]})."""
    first = summary["aggregate"][summary["regimes"][0]]["eval"]
    panels = [("overall", lambda entry: entry["overall"]["loss"])]
    if first:
        for kind, slices in first[0]["slices"].items():
            names = sorted(slices, key=lambda name: (-slices[name]["tokens"], name))[:MAX_SLICES]
            panels += [(f"{kind} = {name}", lambda entry, k=kind, n=name: entry["slices"].get(k, {}).get(n, {}).get("loss"))
                       for name in names]
    return [(title, {r: [(e["fraction"], loss(e) or {"mean": None, "sd": None}) for e in summary["aggregate"][r]["eval"]]
                     for r in summary["regimes"]})
            for title, loss in panels]


def loss_section(summary: dict, number: int) -> tuple[str, int]:
    colours = _colours(summary)
    panels = _slice_panels(summary)
    figures = []
    for start in range(0, len(panels), 3):
        means = [(title, {r: [(x, s["mean"]) for x, s in points] for r, points in series.items()})
                 for title, series in panels[start:start + 3]]
        figures.append(_figure(number, "Held-out loss over training" + (" (continued)" if start else ""),
                               _lines(means, colours, "fraction of training", "loss (nats/token)"),
                               "Mean over seeds of the token-weighted cross-entropy on A's holdout, shared by every regime."))
        number += 1
    rows = [[title, *(_mean_sd(series[r][-1][1], "{:.4f}") if series[r] else "–" for r in summary["regimes"])]
            for title, series in panels]
    first = summary["aggregate"][summary["regimes"][0]]["eval"]
    tokens = first[0]["overall"]["tokens"] if first else 0
    table = _table(["held-out loss at the last checkpoint (mean ± sd over seeds)", *summary["regimes"]], rows)
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
                      "Matrices per alpha bin, every seed's run together; the band is the well-conditioned range [2, 6].")
    number += 1
    alpha = _lines([(m, _layer_points(summary, m, "alpha")) for m in MODULES], colours, "layer", "alpha",
                   band=tuple(summary["alpha_range"]))
    figures += _figure(number, "Figures 2 and 7: layer-wise alpha of v_proj and up_proj", alpha,
                       "Mean over seeds per layer at the last checkpoint; the band is [2, 6].")
    number += 1
    change = _lines([(f"{m}: relative change", _layer_points(summary, m, "relative_change")) for m in MODULES]
                    + [(f"{m}: delta effective rank", _layer_points(summary, m, "delta_effective_rank")) for m in MODULES],
                    colours, "layer", "against iteration 0")
    figures += _figure(number, "Figure 3: layer-wise change and delta effective rank", change,
                       "Relative change ||W - W0||/||W0|| per layer (its spread over layers is the change variance) "
                       "and effective rank minus iteration 0's, at the last checkpoint, mean over seeds per layer.")
    number += 1
    losses, number = loss_section(summary, number)
    training = _table(["regime", "schedule", "lr", "min lr", "train samples", "seeds"],
                      [[r, *(str(summary["runs"][r][0]["training"][k]) for k in ("lr_decay_style", "lr", "min_lr", "train_samples")),
                        ", ".join(str(run["training"]["seed"]) for run in summary["runs"][r])] for r in summary["regimes"]])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>curate experiment</title>
<style>{STYLE}{EXTRA_STYLE}</style></head>
<body>
<h1>Experiment: regimes {html.escape(', '.join(summary['regimes']))}, preset {html.escape(summary['preset'])}</h1>
{_legend(summary)}
{training}
{verdict_section(summary)}
{exposure_section(summary)}
{table1_section(summary)}
<h2>Parameter-space diagnostics at the last checkpoint</h2>
{figures}
{change_variance_table(summary)}
{alpha_table(summary)}
{losses}
{coverage_section(summary)}
<script>{RENDER_CHECK}</script>
</body></html>
"""
