"""`curate build`, `curate tokenizer train` and `curate regimes`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from curate.regimes import REGISTRY, get_regime

tokenizer_app = typer.Typer(help="Train tokenizers for builds.", no_args_is_help=True)


# Regime D's teacher options: `curate build` and `curate experiment` take the same ones.
TEACHER_BACKEND = typer.Option("vllm", help="Regime D: vllm (offline engines in the job) or openai (an endpoint).")
TEACHER_REPLICAS = typer.Option(1, help="Regime D: vLLM engine replicas.")
TEACHER_TP = typer.Option(1, help="Regime D: tensor-parallel size of each engine.")
TEACHER_ENDPOINT = typer.Option(None, help="Regime D: OpenAI-compatible base URL (.../v1).")
TEACHER_CONCURRENCY = typer.Option(8, help="Regime D: requests in flight to the endpoint.")
TEACHER_KV_CACHE_BYTES = typer.Option(None, help="Regime D: KV cache bytes per engine (CPU default 2 GiB).")
TEACHER_MAX_MODEL_LEN = typer.Option(None, help="Regime D: context length of each engine.")
TEACHER_RETRIES = typer.Option(3, help="Regime D: retries of a failed request to the endpoint, with backoff.")
TEACHER_TIMEOUT = typer.Option(600.0, help="Regime D: seconds per request to the endpoint.")
TEACHER_ENFORCE_EAGER = typer.Option(False, help="Regime D: skip vLLM compilation (faster start for small jobs).")
TEACHER_STRUCTURED_OUTPUT = typer.Option(None, help="Regime D: a regex every generation must match.")
ON_TEACHER_FAILURE = typer.Option("keep-original", help="Regime D: keep-original or drop a document whose rewrite failed.")
MAX_TEACHER_FAILURE_FRACTION = typer.Option(0.05, help="Regime D: stop when more than this share of requests fails (no answer from the teacher).")


def build(
    regime: str = typer.Option("A", "--regime", help=f"One of {', '.join(REGISTRY)} (case-insensitive)."),
    inputs: Optional[list[str]] = typer.Option(
        None, "--input", help="Input URL: path, glob, directory, memory://, s3://... Repeatable. Default: the embedded Python corpus."
    ),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Build folder (default out/<REGIME>)."),
    source: Optional[str] = typer.Option(None, "--from", help="Derive B, C or D from this complete A build."),
    text_field: str = typer.Option("text", help="Field holding the document text."),
    max_doc_bytes: int = typer.Option(8 * 1024 * 1024, help="Larger documents are quarantined (too_large)."),
    max_bad_fraction: float = typer.Option(0.5, help="Fail when more than this share of records is invalid."),
    seed: int = typer.Option(0, help="Seed of the document order and of every seeded choice."),
    shard_rows: int = typer.Option(10_000, help="Rows per output shard."),
    tokenizer: Optional[str] = typer.Option(None, help="A tokenizer.json to use; default: train a byte-level BPE on the input."),
    vocab_size: int = typer.Option(16_384, help="Vocabulary size of the trained tokenizer."),
    near_dedup: bool = typer.Option(True, "--near-dedup/--no-near-dedup", help="MinHash near-duplicate removal after exact dedup."),
    threshold: float = typer.Option(0.8, help="Jaccard threshold of near-duplicate removal."),
    num_perm: int = typer.Option(128, help="MinHash permutations."),
    ngram_size: int = typer.Option(5, help="Word n-gram size of shingles."),
    keep: str = typer.Option("min-id", help="Which document of a duplicate cluster stays: min-id, longest or first."),
    holdout: float = typer.Option(0.0, help="Seeded share of the deduplicated documents set aside in OUT/holdout/ for evaluation."),
    repeat_fraction: float = typer.Option(0.1, help="Regime C: share of phase 1 that is repeated."),
    repeat_times: int = typer.Option(10, help="Regime C: copies of each repeated document."),
    teacher_backend: str = TEACHER_BACKEND,
    teacher_model: str = typer.Option("Qwen/Qwen3-30B-A3B-Instruct-2507", help="Regime D: model id or local directory."),
    teacher_replicas: int = TEACHER_REPLICAS,
    teacher_tp: int = TEACHER_TP,
    teacher_endpoint: Optional[str] = TEACHER_ENDPOINT,
    teacher_concurrency: int = TEACHER_CONCURRENCY,
    teacher_kv_cache_bytes: Optional[int] = TEACHER_KV_CACHE_BYTES,
    teacher_max_model_len: Optional[int] = TEACHER_MAX_MODEL_LEN,
    teacher_retries: int = TEACHER_RETRIES,
    teacher_timeout: float = TEACHER_TIMEOUT,
    teacher_enforce_eager: bool = TEACHER_ENFORCE_EAGER,
    teacher_structured_output: Optional[str] = TEACHER_STRUCTURED_OUTPUT,
    on_teacher_failure: str = ON_TEACHER_FAILURE,
    max_teacher_failure_fraction: float = MAX_TEACHER_FAILURE_FRACTION,
    fields: Optional[str] = typer.Option(None, help="Regime VL: comma-separated text fields of flat records."),
    precedence: Optional[str] = typer.Option(None, help="Regime VL: comma-separated field order that keeps the canonical copy."),
    resume: bool = typer.Option(False, help="Finish an interrupted build in OUT without redoing finished stages."),
    keep_work: bool = typer.Option(False, help="Keep the stage scratch OUT/_work after the build completes."),
    shared_output: bool = typer.Option(
        False, help="A local --output is a mount every node of the Ray cluster shares (else it must be s3:// or gs://)."
    ),
    overwrite: bool = typer.Option(False, help="Replace a non-empty OUT."),
    num_cpus: Optional[int] = typer.Option(None, help="CPUs of the local Ray (default: all)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
    quiet: bool = typer.Option(False, help="No progress lines."),
) -> None:
    """Build the corpus of a regime: ingest, dedup, order, phases, tokenize, shards, stats, manifest."""
    options = dict(locals())  # every option by name: the regime's transform picks its own settings
    from curate.jobs.build import BuildConfig, RunOptions, run_build

    chosen = get_regime(regime)
    config = BuildConfig(
        regime=chosen.name,
        inputs=tuple(inputs or ()),
        text_field=text_field,
        max_doc_bytes=max_doc_bytes,
        max_bad_fraction=max_bad_fraction,
        seed=seed,
        shard_rows=shard_rows,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        near_dedup=near_dedup,
        near_threshold=threshold,
        num_perm=num_perm,
        ngram_size=ngram_size,
        keep=keep,
        holdout=holdout,
        source=source,
        settings=chosen.transform.settings_from_options(options),
    )
    output = output or f"out/{chosen.name}"
    run_options = RunOptions(
        output=output,
        resume=resume,
        overwrite=overwrite,
        num_cpus=num_cpus,
        address=address,
        quiet=quiet,
        json_progress=as_json and not quiet,
        shared_output=shared_output,
        keep_work=keep_work,
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
    """Train a byte-level BPE (with an end-of-document token) on the valid records of the input."""
    from curate.curation.ingest import IngestConfig, validate
    from curate.curation.readers import list_input_files, read_raw_records
    from curate.curation.tokenizer import save_tokenizer, train_bpe

    config = IngestConfig(text_field=text_field)

    def texts():
        for index, file in enumerate(list_input_files(inputs)):
            for record in read_raw_records(file, index):
                document, _ = validate(record, config)
                if document is not None:
                    yield document["text"]

    tokenizer = train_bpe(texts(), vocab_size)
    save_tokenizer(tokenizer, str(output))
    print(f"wrote {output} ({tokenizer.get_vocab_size():,} tokens)", file=sys.stderr)


def regimes() -> None:
    """List the registered regimes."""
    for regime in REGISTRY.values():
        print(f"{regime.name:<3} {regime.description}")


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("regimes")(regimes)
    tokenizer_app.command("train")(train_tokenizer)
    app.add_typer(tokenizer_app, name="tokenizer")
