"""The benchmark-overlap part of the coverage report: builds x benchmarks, overall and per phase, and
the most-overlapped items with their evidence (from the `contamination` section of stats.json)."""

from __future__ import annotations

import html
from typing import Protocol

from curate.curation.benchmarks import CONTAMINATION_SECTION as SECTION

SNIPPET_CHARS = 160


class BuildStats(Protocol):
    label: str
    stats: dict


def _benchmarks(builds: list[BuildStats]) -> list[str]:
    return sorted({name for build in builds for name in build.stats.get(SECTION, {})})


def _cells(figures: dict | None) -> str:
    if not figures:
        return "<td>–</td>" * 4
    items = f"{figures['items_ngram']} n-gram, {figures['items_near']} near of {figures['items']}"
    return (
        f"<td>{items}</td><td>{figures['documents']:,}</td><td>{figures['tokens']:,}</td>"
        f"<td>{100 * figures['alignment']:.3f}%</td>"
    )


def _matrix(builds: list[BuildStats], benchmarks: list[str], rows: list[tuple[str, str]], table_id: str) -> str:
    """One row per (build, part), one column group per benchmark; `part` is "overall" or a phase name."""
    head = "".join(f'<th colspan="4">{html.escape(name)}</th>' for name in benchmarks)
    sub = "<th>items overlapped</th><th>documents</th><th>tokens</th><th>alignment</th>" * len(benchmarks)
    body = []
    for build in builds:
        for part, label in rows:
            cells = []
            for name in benchmarks:
                entry = build.stats.get(SECTION, {}).get(name)
                figures = None if entry is None else entry["overall"] if part == "overall" else entry["phases"].get(part)
                cells.append(_cells(figures))
            body.append(f"<tr><td>{html.escape(build.label)}</td><td>{label}</td>{''.join(cells)}</tr>")
    return (
        f'<table id="{table_id}"><thead><tr><th rowspan="2">build</th><th rowspan="2">part</th>{head}</tr>'
        f"<tr>{sub}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _phases(builds: list[BuildStats]) -> list[str]:
    return sorted({phase for b in builds for entry in b.stats.get(SECTION, {}).values() for phase in entry["phases"]})


def _top_items(builds: list[BuildStats], benchmarks: list[str]) -> str:
    rows = []
    for build in builds:
        for name in benchmarks:
            for item in build.stats.get(SECTION, {}).get(name, {}).get("top_items", []):
                evidence = item["evidence"]
                snippet = evidence if len(evidence) <= SNIPPET_CHARS else evidence[:SNIPPET_CHARS] + "…"
                rows.append(
                    f"<tr><td>{html.escape(build.label)}</td><td>{html.escape(name)}</td><td>{html.escape(item['item_id'])}</td>"
                    f"<td>{item['rows_ngram']:,}</td><td>{item['rows_near']:,}</td><td><code>{html.escape(item['doc_id'])}</code></td>"
                    f"<td>{html.escape(snippet)}</td></tr>"
                )
    if not rows:
        return "<p>No document of these builds overlaps an item.</p>"
    return (
        '<table id="contamination-items"><thead><tr><th>build</th><th>benchmark</th><th>item</th><th>rows (n-gram)</th>'
        "<th>rows (near)</th><th>first document</th><th>evidence</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def contamination_html(builds: list[BuildStats]) -> str:
    """The section's HTML, or "" when no build was measured against a benchmark."""
    benchmarks = _benchmarks(builds)
    if not benchmarks:
        return ""
    phases = [(phase, phase.replace("-", " ")) for phase in _phases(builds)]
    removed = [
        f"<li>{html.escape(b.label)}: {html.escape(name)}: {entry['removed']['documents']:,} documents removed "
        f"(items {entry['removed']['items_ngram']} n-gram, {entry['removed']['items_near']} near)</li>"
        for b in builds for name, entry in b.stats.get(SECTION, {}).items() if "removed" in entry
    ]
    return f"""<h2 id="contamination">Benchmark overlap</h2>
<p>How much of each build overlaps the benchmarks it was measured against. <b>Items overlapped</b>: items
sharing a word 13-gram with a document (n-gram) or whose dedup shingles a document matches at the
near-dedup threshold (near). <b>Documents</b> and <b>tokens</b>: rows with any evidence (a repeated
document counts as the rows it is). <b>Alignment</b>: the share of the words lying inside a word 8-gram
that occurs in the benchmark.</p>
{_matrix(builds, benchmarks, [("overall", "all phases")], "contamination-overall")}
<h3>Per phase</h3>
{_matrix(builds, benchmarks, phases, "contamination-phases")}
{"<p>Removed by --decontaminate before ordering:</p><ul>" + "".join(removed) + "</ul>" if removed else ""}
<h3>Most-overlapped items</h3>
{_top_items(builds, benchmarks)}
"""
