"""`curate build`, `curate tokenizer train` and `curate regimes`."""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from curate.curation.benchmarks import BenchmarkSpec, parse_benchmarks
from curate.curation.errors import UserError
from curate.jobs.options import (
    command,
    given_values,
    option_fields,
    option_name,
    option_parameter,
    parameter_name,
)
from curate.regimes import REGISTRY, Regime, default_regime, get_regime

tokenizer_app = typer.Typer(help="Train tokenizers for builds.", no_args_is_help=True)


def regime_parameters(regimes: list[Regime]) -> list[inspect.Parameter]:
    """One option per setting of the given regimes' transforms, help prefixed with the regimes that take it."""
    owners: dict[str, list[str]] = {}
    fields: dict[str, dataclasses.Field] = {}
    for regime in regimes:
        for field in option_fields(regime.transform.settings_type):
            owners.setdefault(parameter_name(field), []).append(regime.name)
            fields.setdefault(parameter_name(field), field)
    return [
        option_parameter(field, f"Regime{'s' if len(owners[name]) > 1 else ''} {', '.join(owners[name])}: ")
        for name, field in fields.items()
    ]


def regime_settings(regime: Regime, values: dict) -> dict:
    """The settings of `regime` given on the command line, by field name."""
    return given_values(option_fields(regime.transform.settings_type), values)


def refuse_other_regimes_options(chosen: list[Regime], values: dict) -> None:
    """An option of a regime that is not being built is refused rather than silently ignored."""
    own = {parameter_name(field) for regime in chosen for field in option_fields(regime.transform.settings_type)}
    for other in REGISTRY.values():
        for field in option_fields(other.transform.settings_type):
            if parameter_name(field) not in own and values.get(parameter_name(field)) is not None:
                names = ", ".join(regime.name for regime in chosen)
                raise UserError(f"{option_name(field)} is an option of regime {other.name}, which is not built here ({names})")


def shared_output_option() -> typer.models.OptionInfo:
    """`--shared-output`, of every command whose Ray tasks write a local --output."""
    return typer.Option(False, help="A local --output is a mount every node of the Ray cluster shares (else it must be s3:// or gs://).")


def benchmark_parameters() -> list[inspect.Parameter]:
    """`--benchmark NAME=URL` and `--benchmark-fields NAME=f1,f2`, shared by `curate build` and `curate contamination`."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("benchmark", keyword, annotation=Optional[list[str]], default=typer.Option(
            None, "--benchmark", help="NAME=URL of a benchmark (JSONL, .gz, .zst or Parquet) to measure overlap with. Repeatable."
        )),
        inspect.Parameter("benchmark_fields", keyword, annotation=Optional[list[str]], default=typer.Option(
            None, "--benchmark-fields", help="NAME=f1,f2: the fields that make an item's text (default: its string fields). Repeatable."
        )),
    ]


def benchmarks_given(values: dict) -> tuple[BenchmarkSpec, ...]:
    return tuple(parse_benchmarks(values["benchmark"] or [], values["benchmark_fields"] or []))


def _build_parameters() -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY

    def option(name: str, annotation: Any, declaration: Any) -> inspect.Parameter:
        return inspect.Parameter(name, keyword, annotation=annotation, default=declaration)

    return [
        option("regime", str, typer.Option(default_regime(), "--regime", help=f"One of {', '.join(REGISTRY)} (case-insensitive).")),
        option("inputs", Optional[list[str]], typer.Option(
            None, "--input", help="Input URL: path, glob, directory, memory://, s3://... Repeatable. Default: the embedded Python corpus."
        )),
        option("output", Optional[str], typer.Option(None, "--output", "-o", help="Build folder (default out/<REGIME>).")),
        option("source", Optional[str], typer.Option(None, "--from", help="Derive a regime from this complete build of its base regime.")),
        option("text_field", str, typer.Option("text", help="Field holding the document text.")),
        option("max_doc_bytes", int, typer.Option(8 * 1024 * 1024, help="Larger documents are quarantined (too_large).")),
        option("max_bad_fraction", float, typer.Option(0.5, help="Fail when more than this share of records is invalid.")),
        option("seed", int, typer.Option(0, help="Seed of the document order and of every seeded choice.")),
        option("shard_rows", int, typer.Option(10_000, help="Rows per output shard.")),
        option("tokenizer", Optional[str], typer.Option(None, help="A tokenizer.json to use; default: train a byte-level BPE on the input.")),
        option("vocab_size", int, typer.Option(16_384, help="Vocabulary size of the trained tokenizer.")),
        option("near_dedup", bool, typer.Option(True, "--near-dedup/--no-near-dedup", help="MinHash near-duplicate removal after exact dedup.")),
        option("threshold", float, typer.Option(0.8, help="Jaccard threshold of near-duplicate removal.")),
        option("num_perm", int, typer.Option(128, help="MinHash permutations.")),
        option("ngram_size", int, typer.Option(5, help="Word n-gram size of shingles.")),
        option("keep", str, typer.Option("min-id", help="Which document of a duplicate cluster stays: min-id, longest or first.")),
        option("holdout", float, typer.Option(0.0, help="Seeded share of the deduplicated documents set aside in OUT/holdout/ for evaluation.")),
        option("docs", int, typer.Option(0, help="Keep a seeded sample of this many deduplicated documents (0: all); the rest count as not_sampled.")),
        *benchmark_parameters(),
        option("decontaminate", bool, typer.Option(False, help="Remove every document that overlaps a --benchmark, before ordering (counted as contaminated).")),
        *regime_parameters(list(REGISTRY.values())),
        option("resume", bool, typer.Option(False, help="Finish an interrupted build in OUT without redoing finished stages.")),
        option("keep_work", bool, typer.Option(False, help="Keep the stage scratch OUT/_work after the build completes.")),
        option("shared_output", bool, shared_output_option()),
        option("overwrite", bool, typer.Option(False, help="Replace a non-empty OUT.")),
        option("num_cpus", Optional[int], typer.Option(None, help="CPUs of the local Ray (default: all).")),
        option("address", Optional[str], typer.Option(None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray).")),
        option("as_json", bool, typer.Option(False, "--json", help="Print a machine-readable summary on stdout.")),
        option("quiet", bool, typer.Option(False, help="No progress lines.")),
    ]


def build(**values: Any) -> None:
    """Build the corpus of a regime: ingest, dedup, order, phases, tokenize, shards, stats, manifest."""
    from curate.jobs.build import BuildConfig, RunOptions, run_build

    chosen = get_regime(values["regime"])
    refuse_other_regimes_options([chosen], values)
    config = BuildConfig(
        regime=chosen.name,
        inputs=tuple(values["inputs"] or ()),
        text_field=values["text_field"],
        max_doc_bytes=values["max_doc_bytes"],
        max_bad_fraction=values["max_bad_fraction"],
        seed=values["seed"],
        shard_rows=values["shard_rows"],
        tokenizer=values["tokenizer"],
        vocab_size=values["vocab_size"],
        near_dedup=values["near_dedup"],
        near_threshold=values["threshold"],
        num_perm=values["num_perm"],
        ngram_size=values["ngram_size"],
        keep=values["keep"],
        holdout=values["holdout"],
        sample_docs=values["docs"],
        source=values["source"],
        settings=regime_settings(chosen, values),
        benchmarks=benchmarks_given(values),
        decontaminate=values["decontaminate"],
    )
    output = values["output"] or f"out/{chosen.name}"
    as_json, quiet = values["as_json"], values["quiet"]
    run_options = RunOptions(
        output=output,
        resume=values["resume"],
        overwrite=values["overwrite"],
        num_cpus=values["num_cpus"],
        address=values["address"],
        quiet=quiet,
        json_progress=as_json and not quiet,
        shared_output=values["shared_output"],
        keep_work=values["keep_work"],
    )
    started = time.perf_counter()
    result = run_build(config, run_options)
    report(build_summary(result["manifest"], output, time.perf_counter() - started, result["timings"]), as_json, quiet)


def report(summary: dict, as_json: bool, quiet: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    elif not quiet:
        print_summary(summary)


def build_summary(manifest: dict, output: str, seconds: float, timings: dict) -> dict:
    input_bytes = sum(i.get("bytes", 0) for i in manifest.get("inputs", []))
    return {
        "output": output,
        "regime": manifest["regime"],
        "counts": manifest["counts"],
        "phases": [{k: p[k] for k in ("name", "rows", "tokens")} | {"shards": len(p["shards"])} for p in manifest["phases"]],
        "config_hash": manifest["config_hash"],
        "seconds": round(seconds, 2),
        "stage_seconds": {k: round(v, 2) for k, v in timings.items()},
        "input_mb_per_s": round(input_bytes / 1e6 / seconds, 2) if seconds else None,
    }


def print_summary(summary: dict) -> None:
    counts = summary["counts"]
    parts = " + ".join(f"{name.replace('_', ' ')} {value:,}" for name, value in counts.items() if name != "input")
    lines = [
        "",
        f"regime {summary['regime']} built in {summary['output']}  ({summary['seconds']:.1f} s, config {summary['config_hash']})",
        f"  input {counts['input']:,} = {parts}",
    ]
    for phase in summary["phases"]:
        lines.append(f"  {phase['name']}: {phase['rows']:,} rows, {phase['tokens']:,} tokens, {phase['shards']} shards")
    lines.append(f"  manifest: {summary['output']}/manifest.json   quarantine: {summary['output']}/quarantine/")
    print("\n".join(lines))


def train_tokenizer(
    inputs: list[str] = typer.Option(..., "--input", help="Input URL(s), as for build."),
    vocab_size: int = typer.Option(16_384, help="Vocabulary size."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write tokenizer.json."),
    text_field: str = typer.Option("text", help="Field holding the document text."),
) -> None:
    """Train a byte-level BPE (with an end-of-document token) on the valid records of the input, in
    input order up to its first 128 Mi characters (TOKENIZER_TRAIN_CHARS), as a build does."""
    from curate.curation.ingest import IngestConfig, validate
    from curate.curation.readers import list_input_files, read_raw_records
    from curate.curation.tokenizer import (
        TOKENIZER_TRAIN_CHARS,
        leading_texts,
        save_tokenizer,
        train_bpe,
    )

    config = IngestConfig(text_field=text_field)

    def texts():
        for index, file in enumerate(list_input_files(inputs)):
            for record in read_raw_records(file, index):
                document, _ = validate(record, config)
                if document is not None:
                    yield document["text"]

    tokenizer = train_bpe(leading_texts(texts(), TOKENIZER_TRAIN_CHARS), vocab_size)
    save_tokenizer(tokenizer, str(output))
    print(f"wrote {output} ({tokenizer.get_vocab_size():,} tokens)", file=sys.stderr)


def regimes() -> None:
    """List the registered regimes."""
    for regime in REGISTRY.values():
        print(f"{regime.name:<3} {regime.description}")


def register(app: typer.Typer) -> None:
    app.command("build")(command(build, _build_parameters(), build.__doc__))
    app.command("regimes")(regimes)
    tokenizer_app.command("train")(train_tokenizer)
    app.add_typer(tokenizer_app, name="tokenizer")
