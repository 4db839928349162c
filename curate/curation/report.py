"""The coverage report: one self-contained HTML page comparing builds side by side.

Everything is inline (CSS, SVG plots drawn by matplotlib, a few lines of script that mark each
plot as drawn once the browser has laid it out), so the page opens without a network. Each
build keeps one colour in every plot.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass

import matplotlib
from matplotlib.ticker import MaxNLocator, NullFormatter

from curate.curation.contamination_report import contamination_html
from curate.curation.errors import UserError
from curate.curation.manifest import is_complete, read_json
from curate.curation.plots import new_figure, to_svg
from curate.curation.stats import STATS_NAME

SECTIONS = ("phase-1", "overall")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


@dataclass(frozen=True)
class Build:
    """One build in the report: its label, folder and `stats.json`."""

    label: str
    path: str
    stats: dict


def load_builds(paths: list[str]) -> list[Build]:
    """Read each build's stats.json; labels are "<regime> (<folder>)" when the manifest says the regime."""
    builds = []
    for path in paths:
        try:
            stats = read_json(path, STATS_NAME)
        except FileNotFoundError:
            raise UserError(f"{path} has no {STATS_NAME}: run `curate stats {path}` first") from None
        regime = read_json(path, "manifest.json").get("regime") if is_complete(path) else None
        folder = os.path.basename(os.path.normpath(path)) or path
        label = f"{regime} ({folder})" if regime and regime != folder else folder
        if any(build.label == label for build in builds):
            label = f"{label} #{len(builds) + 1}"
        builds.append(Build(label, path, stats))
    return builds


def section(build: Build, name: str) -> dict:
    """`overall` or one phase of a build's statistics ({} when the build has no such phase)."""
    if name == "overall":
        return build.stats.get("overall", {})
    return build.stats.get("phases", {}).get(name, {})


# ---- plots --------------------------------------------------------------------------------


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _no_data(axis, what: str) -> None:
    axis.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=axis.transAxes, color="#777")


def _line_panels(builds: list[Build], points_of, axes_setup: dict, what: str, marker: str | None = "o") -> str:
    """One panel per section, one line per build; `points_of(section) -> [(x, y), ...]`."""
    figure, axes = new_figure(len(SECTIONS))
    for axis, name in zip(axes, SECTIONS):
        drawn = False
        for index, build in enumerate(builds):
            points = points_of(section(build, name))
            if points:
                axis.plot(*zip(*points), marker=marker, color=_colour(index), label=build.label, linewidth=1.6)
                drawn = True
        axis.set(title=name, **axes_setup)
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.grid(True, alpha=0.3)
        if drawn:
            axis.legend(fontsize=8)
        else:
            _no_data(axis, what)
    return to_svg(figure)


def _rank_frequency_points(values: dict) -> list[tuple]:
    curve = values.get("rank_frequency") or {}
    return [(r, f) for r, f in zip(curve.get("ranks", []), curve.get("frequencies", [])) if f]


def plot_rank_frequency(builds: list[Build]) -> str:
    setup = {"xscale": "log", "yscale": "log", "xlabel": "rank of type (log)", "ylabel": "relative frequency (log)"}
    return _line_panels(builds, _rank_frequency_points, setup, "unigram counts", marker=None)


def plot_distinct_ngrams(builds: list[Build]) -> str:
    def points(values: dict) -> list[tuple]:
        distinct = values.get("distinct_ngrams") or {}
        return sorted((int(n), count) for n, count in distinct.items() if count)

    setup = {
        "xscale": "log",
        "yscale": "log",
        "xticks": [1, 2, 4, 8],
        "xticklabels": ["1", "2", "4", "8"],
        "xlabel": "n (n-gram length, tokens)",
        "ylabel": "distinct n-grams (log)",
    }
    return _line_panels(builds, points, setup, "n-gram sketches")


def plot_tail_mass(builds: list[Build]) -> str:
    def points(values: dict) -> list[tuple]:
        by_k = values.get("tail_mass_by_k") or {}
        return sorted((int(k), 100 * v) for k, v in by_k.items() if v is not None)

    setup = {"xscale": "log", "xlabel": "K: top types of the reference ranking (log)", "ylabel": "tokens outside top K (%)"}
    return _line_panels(builds, points, setup, "unigram counts")


def _grouped_bars(axis, builds: list[Build], histogram_of, log: bool = True) -> bool:
    """Bars of `histogram_of(build) -> {size: count}` grouped by size, one colour per build."""
    width = 0.8 / max(1, len(builds))
    sizes = sorted({int(size) for build in builds for size in histogram_of(build)})
    for index, build in enumerate(builds):
        histogram = histogram_of(build)
        heights = [histogram.get(str(size), 0) for size in sizes]
        positions = [i + (index - (len(builds) - 1) / 2) * width for i in range(len(sizes))]
        axis.bar(positions, heights, width=width, color=_colour(index), label=build.label)
    axis.set_xticks(range(len(sizes)), [str(size) for size in sizes])
    if log:
        axis.set_yscale("log")
    else:
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    if sizes:
        axis.legend(fontsize=8)
    return bool(sizes)


def _near_clusters(build: Build) -> dict:
    return build.stats.get("dedup", {}).get("near", {}).get("cluster_size_histogram") or {}


def plot_cluster_sizes(builds: list[Build]) -> str:
    figure, axes = new_figure(len(SECTIONS) + 1)
    for axis, name in zip(axes, SECTIONS):
        if not _grouped_bars(axis, builds, lambda b: section(b, name).get("cluster_size_histogram") or {}):
            _no_data(axis, "document hashes")
        axis.set(title=f"shards, {name}", xlabel="copies per distinct document", ylabel="distinct documents (log)")
    near = axes[-1]
    if not _grouped_bars(near, builds, _near_clusters, log=False):
        _no_data(near, "near-duplicate clusters")
    near.set(title="dedup stage: near-duplicate clusters", xlabel="documents per cluster", ylabel="clusters")
    return to_svg(figure)


def _stacked_shares(builds: list[Build], key: str, what: str) -> str:
    figure, axes = new_figure(len(SECTIONS), panel=(4.6, 1.2 + 0.45 * len(builds)))
    categories = sorted({c for b in builds for name in SECTIONS for c in section(b, name).get(key, {})})
    colours = matplotlib.colormaps["tab20"].colors
    for axis, name in zip(axes, SECTIONS):
        labels = [b.label for b in builds]
        left = [0.0] * len(builds)
        for c_index, category in enumerate(categories):
            shares = []
            for build in builds:
                counts = section(build, name).get(key, {})
                total = sum(counts.values())
                shares.append(100 * counts.get(category, 0) / total if total else 0)
            axis.barh(labels, shares, left=left, color=colours[c_index % len(colours)], label=category)
            left = [a + b for a, b in zip(left, shares)]
        axis.invert_yaxis()
        axis.set(title=name, xlabel=f"share of {what} (%)", xlim=(0, 100))
        if not categories:
            _no_data(axis, what)
    if categories:
        axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.06, 0.5))
    return to_svg(figure)


def plot_languages(builds: list[Build]) -> str:
    return _stacked_shares(builds, "languages", "documents")


def plot_code_languages(builds: list[Build]) -> str:
    return _stacked_shares(builds, "code_languages", "code documents")


PHASE_METRICS = (
    ("documents", "documents", 1),
    ("tokens", "tokens", 1),
    ("exact_duplicate_rate", "exact-duplicate rate (%)", 100),
    ("distinct_ngrams.8", "distinct 8-grams", 1),
    ("unigram_entropy", "unigram entropy (bits)", 1),
    ("tail_mass", "tail mass (% of tokens)", 100),
)


def metric(values: dict, key: str):
    """A value by dotted key (`distinct_ngrams.8`), or None."""
    for part in key.split("."):
        if not isinstance(values, dict):
            return None
        values = values.get(part)
    return values


def plot_phase_bars(builds: list[Build]) -> str:
    figure, axes = new_figure(3, rows=2, panel=(4.6, 2.9))
    phases = sorted({p for b in builds for p in b.stats.get("phases", {})})
    width = 0.8 / max(1, len(builds))
    for axis, (key, label, scale) in zip(axes, PHASE_METRICS):
        for index, build in enumerate(builds):
            values = [metric(section(build, phase), key) for phase in phases]
            heights = [scale * v if v is not None else 0 for v in values]
            positions = [i + (index - (len(builds) - 1) / 2) * width for i in range(len(phases))]
            axis.bar(positions, heights, width=width, color=_colour(index), label=build.label)
        axis.set_xticks(range(len(phases)), phases)
        axis.set(title=label, ylabel=label)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper right", fontsize=8, ncols=len(builds))
    return to_svg(figure)


PLOTS = (
    (
        "Rank-frequency curves",
        plot_rank_frequency,
        "Relative frequency of each token type against its rank, both on log scales. A steeper, shorter "
        "curve means the mass sits on fewer, more frequent types (support collapse, regime D).",
    ),
    (
        "Copies per distinct document",
        plot_cluster_sizes,
        "Left and middle: how many distinct documents occur once, twice, ... in the shards (exact text "
        "match). A deduplicated build has a single bar at 1; regime C's phase 1 has every distinct document at "
        "10 copies. Right: sizes of the near-duplicate clusters the dedup stage collapsed to one document each "
        "(derived builds inherit their source's).",
    ),
    (
        "Distinct n-grams",
        plot_distinct_ngrams,
        "Number of distinct token n-grams for n = 1 (exact), 2, 4 and 8 (HyperLogLog estimates, about 1% error). "
        "Repetition (C) divides the count of long n-grams; rewriting into frequent words (D) cuts short ones.",
    ),
    (
        "Tail mass",
        plot_tail_mass,
        "Share of tokens that fall outside the K most frequent types of the reference build's ranking. "
        "Lower curves mean the text keeps to the head of the vocabulary and leaves the long tail uncovered.",
    ),
    (
        "Language mix",
        plot_languages,
        "Share of documents by detected natural language (by Unicode script; 'unknown' has no letters).",
    ),
    (
        "Programming-language mix",
        plot_code_languages,
        "Share of code documents by detected programming language. Converting all code to one language "
        "collapses this bar to one colour (entropy near 0).",
    ),
    (
        "Per-phase comparison",
        plot_phase_bars,
        "Size, duplication and frequency-profile metrics per phase, one bar per build. The regimes differ "
        "in phase 1 only; phase 2 should match across builds.",
    ),
)

# ---- page ---------------------------------------------------------------------------------

SUMMARY_ROWS = (
    ("documents", "documents", "{:,}"),
    ("tokens", "tokens", "{:,}"),
    ("bytes", "text bytes", "{:,}"),
    ("exact_duplicate_rate", "exact-duplicate rate", "{:.1%}"),
    ("near_duplicate_rate", "near-duplicate rate (dedup stage)", "{:.2%}"),
    ("effective_distinct_documents", "effective distinct documents", "{:,.0f}"),
    ("distinct_ngrams.1", "distinct 1-grams", "{:,}"),
    ("distinct_ngrams.8", "distinct 8-grams", "{:,}"),
    ("hapax_ratio_8", "hapax ratio of 8-grams", "{:.3f}"),
    ("good_turing_coverage_8", "Good-Turing coverage of 8-grams", "{:.3f}"),
    ("unigram_entropy", "unigram entropy (bits)", "{:.3f}"),
    ("zipf_slope", "Zipf slope (ranks 10-1000)", "{:.3f}"),
    ("tail_mass", "tail mass (outside reference top 1000)", "{:.2%}"),
    ("js_divergence", "JS divergence to reference (bits)", "{:.4f}"),
    ("code_share", "code share of documents", "{:.1%}"),
    ("code_language_entropy", "code-language entropy (bits)", "{:.3f}"),
    ("compression_ratio_mean", "compression ratio, mean (raw / zlib)", "{:.3f}"),
    ("repeated_ngram_ratio_mean", "repeated 4-gram ratio inside records", "{:.4f}"),
    ("prompt_duplication_share_before_dedup", "VL prompt segments duplicated across fields, input", "{:.1%}"),
    ("prompt_duplication_share", "VL prompt segments duplicated across fields, shards", "{:.1%}"),
)

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1400px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f4f4f4; }
figure.plot { margin: 1rem 0 2rem 0; } figure.plot svg { max-width: 100%; height: auto; }
figcaption { color: #444; font-size: 0.9rem; max-width: 60rem; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.3em; }
"""

# Marks each plot once the browser has laid it out with a non-empty drawing; the render test reads it.
RENDER_CHECK = """
window.addEventListener("load", function () {
  var figures = document.querySelectorAll("figure.plot");
  var drawn = 0;
  figures.forEach(function (figure) {
    var svg = figure.querySelector("svg");
    var box = svg ? svg.getBoundingClientRect() : null;
    var marks = svg ? svg.querySelectorAll("path, rect, use, text").length : 0;
    var ok = box !== null && box.width > 100 && box.height > 100 && marks > 10;
    figure.setAttribute("data-rendered", ok ? "yes" : "no");
    if (ok) { drawn += 1; }
  });
  document.body.setAttribute("data-plots-rendered", drawn + "/" + figures.length);
});
"""


def _format(value, pattern: str) -> str:
    if value is None:
        return "–"
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return html.escape(str(value))


def summary_table(builds: list[Build]) -> str:
    head = "".join(
        f'<th colspan="2"><span class="swatch" style="background:{_colour(i)}"></span>{html.escape(b.label)}</th>'
        for i, b in enumerate(builds)
    )
    sub = "".join("<th>phase 1</th><th>overall</th>" for _ in builds)
    rows = []
    for key, label, pattern in SUMMARY_ROWS:
        cells = "".join(
            f"<td>{_format(metric(section(b, 'phase-1'), key), pattern)}</td>"
            f"<td>{_format(metric(section(b, 'overall'), key), pattern)}</td>"
            for b in builds
        )
        rows.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
    return (
        f'<table id="summary"><thead><tr><th rowspan="2">metric</th>{head}</tr><tr>{sub}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render_report(builds: list[Build]) -> str:
    """The HTML page for these builds (deterministic: same statistics, same bytes)."""
    if not builds:
        raise UserError("the report needs at least one build")
    references = sorted({str(b.stats.get("reference")) for b in builds if b.stats.get("reference")})
    figures = []
    for number, (title, plot, note) in enumerate(PLOTS, start=1):
        figures.append(
            f'<h2>{number}. {html.escape(title)}</h2><figure class="plot" id="plot-{number}">{plot(builds)}'
            f"<figcaption>{html.escape(note)}</figcaption></figure>"
        )
    listing = "".join(f"<li><b>{html.escape(b.label)}</b>: <code>{html.escape(b.path)}</code></li>" for b in builds)
    reference_note = (
        f"Tail mass and JS divergence of derived builds use the unigram ranking of: {html.escape(', '.join(references))}; "
        "a build without a reference is its own."
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>curate coverage report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style></head>
<body>
<h1>Coverage report</h1>
<p>Builds compared: </p><ul>{listing}</ul>
<p>Units: tokens of the build family's tokenizer (words where a build is untokenized). {reference_note}
A dash means the statistic cannot be computed for that build (for example no text column).</p>
<h2>Summary</h2>
{summary_table(builds)}
{contamination_html(builds)}
{''.join(figures)}
<script>{RENDER_CHECK}</script>
</body></html>
"""
