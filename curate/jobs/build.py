"""`curate build`: the Ray job that builds a regime's corpus, composed from the stages in `jobs/stages/`.

`build_from_input` (a regime built from its input) and `derive` (one derived from a complete build,
`--from`, or its base built first under `OUT/_work/base`) are the list of stages, in order; the
manifest is written last. Nothing here names a regime: the registry says which transform phase 1
gets and what it is built from.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace

import ray

from curate.curation.benchmarks import CONTAMINATION_SECTION, BenchmarkSpec
from curate.curation.errors import UserError
from curate.curation.ingest import IngestConfig
from curate.curation.manifest import (
    FORMAT_VERSION,
    config_hash,
    is_complete,
    load_manifest,
    write_manifest,
)
from curate.curation.readers import InputFile, list_input_files
from curate.curation.storage import absolute, is_remote
from curate.curation.tokenizer import check_vocab_size, load_tokenizer
from curate.dedup.near import NearDedupConfig
from curate.jobs.ray_cluster import init_ray, set_parallelism, shuffle_partitions
from curate.jobs.runner import Progress, StageRunner, prepare_output
from curate.jobs.stages.benchmark_overlap import (
    Benchmarks,
    Decontaminate,
    Decontaminated,
    MeasureOverlap,
    load_benchmarks,
)
from curate.jobs.stages.copy_source import CopySource
from curate.jobs.stages.dedup_pairs import WritePairs
from curate.jobs.stages.derive_phase1 import DerivePhase1
from curate.jobs.stages.exact_dedup import ExactDedup
from curate.jobs.stages.ingest import Ingest
from curate.jobs.stages.near_dedup import NearDedup
from curate.jobs.stages.phases import WritePhases
from curate.jobs.stages.stats import CoverageStats
from curate.regimes import (
    Regime,
    default_regime,
    get_regime,
    recipe_record,
    regime_columns,
)

TOOL_VERSION = "0.1.0"
EMBEDDED_INPUT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides a build's bytes, and nothing that does not (paths, CPUs, verbosity).

    `settings` are the settings of the regime's phase-1 transform (see its module); they are
    checked, completed with defaults and recorded in the manifest's recipe.
    """

    regime: str = field(default_factory=default_regime)
    inputs: tuple[str, ...] = ()
    text_field: str = "text"
    max_doc_bytes: int = 8 * 1024 * 1024
    max_bad_fraction: float = 0.5
    seed: int = 0
    shard_rows: int = 10_000
    tokenizer: str | None = None
    vocab_size: int = 16_384
    near_dedup: bool = True
    near_threshold: float = 0.8
    num_perm: int = 128
    ngram_size: int = 5
    keep: str = "min-id"
    holdout: float = 0.0
    sample_docs: int = 0
    source: str | None = None
    settings: dict = field(default_factory=dict)
    benchmarks: tuple[BenchmarkSpec, ...] = ()
    decontaminate: bool = False

    def hashed(self) -> dict:
        """The configuration as recorded: a derived build names its source by config hash, not path;
        a build without benchmarks or a sample records none (its hash is what it was before they existed)."""
        values = asdict(self)
        if self.source is not None:
            values["source"] = load_manifest(self.source)["config_hash"]
        if not self.benchmarks:
            del values["benchmarks"], values["decontaminate"]
        if not self.sample_docs:
            del values["sample_docs"]
        return values


    def near(self) -> NearDedupConfig:
        return NearDedupConfig(
            threshold=self.near_threshold, num_perm=self.num_perm, ngram_size=self.ngram_size, keep=self.keep, seed=self.seed
        )


@dataclass(frozen=True)
class RunOptions:
    output: str
    resume: bool = False
    overwrite: bool = False
    num_cpus: int | None = None
    address: str | None = None
    quiet: bool = False
    json_progress: bool = False
    shared_output: bool = False
    keep_work: bool = False


def run_build(config: BuildConfig, options: RunOptions) -> dict:
    """Build `config.regime` into `options.output`; returns the manifest and the stage timings."""
    regime = get_regime(config.regime)
    config = replace(config, regime=regime.name, settings=validate(regime, config))
    out = absolute(options.output)
    files = list_input_files(list(config.inputs)) if config.inputs else []
    progress = Progress(options.quiet, options.json_progress)
    bars = sys.stderr.isatty() and not options.quiet and not options.json_progress
    init_ray(options.address, options.num_cpus, progress_bars=bars)
    benchmarks = load_benchmarks(list(config.benchmarks), config.near()) if config.benchmarks else None
    prepare_output(out, options.resume, options.overwrite)
    runner = StageRunner(out, progress)
    check_shared_output(out, options.shared_output)
    set_parallelism(_input_bytes(config, files))
    runner.check_config({"config": asdict(config)})
    runner.check_inputs([f.fingerprint() for f in files] + (benchmarks.fingerprints() if benchmarks else []))
    progress.line(f"curate build --regime {regime.name} -> {out}")
    if regime.derived_from is None:
        manifest = build_from_input(config, regime, files, out, runner, benchmarks)
    else:
        source = config.source
        if source is None:
            source = runner.path("base")
            if not is_complete(source):
                base = get_regime(regime.derived_from)
                # The base is scratch removed with OUT/_work: only the derived build is measured against benchmarks.
                base_config = replace(config, regime=base.name, settings={}, benchmarks=())
                base_config = replace(base_config, settings=validate(base, base_config))
                build_from_input(base_config, base, files, source, StageRunner(source, progress), None)
        manifest = derive(config, regime, source, out, runner, benchmarks)
    if not options.keep_work:
        runner.remove()
    return {"manifest": manifest, "timings": runner.timings}


def check_shared_output(out: str, declared_shared: bool) -> None:
    """A local OUT on a cluster of several nodes must be a mount every node sees, as the user declares."""
    if is_remote(out) or declared_shared:
        return
    nodes = [node for node in ray.nodes() if node["Alive"]]
    if len(nodes) > 1:
        raise UserError(
            f"--output {out} is a local path, but Ray has {len(nodes)} nodes: write to storage every node sees "
            "(s3://, gs://), or pass --shared-output if the path is a mount every node shares"
        )


def build_from_input(
    config: BuildConfig, regime: Regime, files: list[InputFile], out: str, runner: StageRunner, benchmarks: Benchmarks | None
) -> dict:
    """Run the stages of a regime built from its input into `out`; return its manifest (written last).

    The list below is the order of the stages; every other description of it points here.
    """
    transform = regime.transform
    ingest_config = IngestConfig(config.text_field, config.max_doc_bytes, regime_columns(regime.name))
    ingested = runner.run(
        Ingest(files=files, config=ingest_config, transform=transform, settings=config.settings, shard_rows=config.shard_rows, out=out)
    )
    ingested.check_bad_fraction(config.max_bad_fraction)
    docs, exact_removed, near_removed, near_measures = ingested.docs, 0, 0, {}
    if transform.deduplicates:
        exact = runner.run(ExactDedup(docs))
        docs, exact_removed, near_pairs = exact.docs, exact.removed, None
        if config.near_dedup:
            near = runner.run(NearDedup(replace(config.near(), num_partitions=shuffle_partitions()), docs))
            docs, near_removed, near_measures, near_pairs = near.docs, near.removed, near.measures, near.pairs
        runner.run(WritePairs(out, exact.pairs, near_pairs, config.shard_rows))
    removed = runner.run(Decontaminate(benchmarks, docs)) if config.decontaminate else None
    docs = removed.docs if removed else docs
    written = runner.run(
        WritePhases(docs=docs, transform=transform, settings=config.settings, seed=config.seed, shard_rows=config.shard_rows,
                    tokenizer=config.tokenizer, vocab_size=config.vocab_size, holdout=config.holdout,
                    sample_docs=config.sample_docs, out=out)
    )
    counts = with_dropped(
        {
            "input": ingested.input,
            "quarantined": ingested.quarantined,
            "exact_duplicates": exact_removed,
            "near_duplicates": near_removed,
        }
        | ({"contaminated": removed.removed} if removed else {})
        | ({"not_sampled": written.not_sampled} if config.sample_docs else {})
        | {"kept": written.documents}
        | ({"held_out": written.holdout["rows"]} if written.holdout else {}),
        written.dropped,
    )
    dedup = counts | {"quarantine_reasons": ingested.reasons, "near": near_measures}
    parts = written.phases + ([written.holdout | {"name": "holdout"}] if written.holdout else [])
    sections = written.sections | overlap_section(config, benchmarks, out, parts, runner, removed)
    runner.run(CoverageStats(out, transform, dedup, None, written.phases, sections))
    manifest = make_manifest(regime, config, written.phases, counts, written.tokenizer, ingested.inputs)
    manifest |= {"dedup": dedup} | sections | ({"holdout": written.holdout} if written.holdout else {})
    write_manifest(out, manifest)
    return manifest


def derive(config: BuildConfig, regime: Regime, source: str, out: str, runner: StageRunner, benchmarks: Benchmarks | None) -> dict:
    """Build a derived regime from the complete build at `source`; return its manifest (written last)."""
    source_manifest = load_manifest(source)
    if source_manifest["regime"] != regime.derived_from:
        raise UserError(
            f"--from must name a complete regime {regime.derived_from} build; {source} is regime {source_manifest['regime']}"
        )
    runner.run(CopySource(source, source_manifest, out))
    derived = runner.run(
        DerivePhase1(transform=regime.transform, settings=config.settings, seed=config.seed, shard_rows=config.shard_rows,
                     source=source, source_manifest=source_manifest, out=out)
    )
    phases = [derived.phase] + [phase for phase in source_manifest["phases"] if phase["name"] != "phase-1"]
    dedup = source_manifest.get("dedup", {})
    holdout = source_manifest.get("holdout")
    parts = phases + ([holdout | {"name": "holdout"}] if holdout else [])
    sections = derived.sections | overlap_section(config, benchmarks, out, parts, runner, None)
    for name, entry in sections.get(CONTAMINATION_SECTION, {}).items():
        removed = source_manifest.get(CONTAMINATION_SECTION, {}).get(name, {}).get("removed")
        if removed is not None:
            entry["removed"] = removed | {"evidence": "the source build's contamination/"}
    runner.run(CoverageStats(out, regime.transform, dedup, source, phases, sections))
    counts = with_dropped(source_manifest["counts"], derived.dropped)
    manifest = make_manifest(regime, config, phases, counts, source_manifest["tokenizer"], source_manifest["inputs"])
    manifest |= {"dedup": dedup} | sections | {k: source_manifest[k] for k in ("holdout",) if k in source_manifest}
    manifest["source"] = {"config_hash": source_manifest["config_hash"], "regime": source_manifest["regime"]}
    if config.source is not None:  # a base built under OUT/_work is removed with it
        manifest["source"]["url"] = absolute(source)
    write_manifest(out, manifest)
    return manifest


def overlap_section(
    config: BuildConfig, benchmarks: Benchmarks | None, out: str, parts: list[dict], runner: StageRunner,
    removed: Decontaminated | None,
) -> dict:
    """The `contamination` section of a build given benchmarks: its phases and holdout measured as written."""
    if benchmarks is None:
        return {}
    measured = runner.run(MeasureOverlap(benchmarks=benchmarks, out=out, parts=parts, shard_rows=config.shard_rows, removed=removed))
    return {CONTAMINATION_SECTION: measured.section}


def with_dropped(counts: dict, dropped: int) -> dict:
    """The counts after the phase-1 transform dropped `dropped` kept documents; they must add up."""
    if dropped:
        counts = counts | {"kept": counts["kept"] - dropped, "dropped": counts.get("dropped", 0) + dropped}
    if sum(v for k, v in counts.items() if k != "input") != counts["input"]:
        raise RuntimeError(f"counts do not add up: {counts}")
    return counts


def make_manifest(regime: Regime, config: BuildConfig, phases: list[dict], counts: dict, tokenizer: dict | None, inputs: list) -> dict:
    hashed = config.hashed()
    return {
        "format_version": FORMAT_VERSION,
        "regime": regime.name,
        "recipe": recipe_record(regime, config.settings),
        "phases": phases,
        "counts": counts,
        "tokenizer": tokenizer,
        "config": hashed,
        "config_hash": config_hash(hashed),
        "inputs": inputs,
        "tool_version": TOOL_VERSION,
    }


def validate(regime: Regime, config: BuildConfig) -> dict:
    """Refuse option combinations that cannot make the regime, with one line each; return the checked settings."""
    if regime.derived_from is None and config.source is not None:
        raise UserError(f"--from derives a regime from a complete build; regime {regime.name} is built from --input")
    if regime.derived_from is None and not config.inputs and not regime.transform.embedded_input:
        raise UserError(f"--regime {regime.name} needs --input: the embedded default corpus holds no {regime.name} records")
    if config.source is not None:
        load_manifest(config.source)
    if config.tokenizer is not None:
        load_tokenizer(config.tokenizer)
    elif regime.derived_from is None and regime.transform.tokenizes:
        check_vocab_size(config.vocab_size)  # before any work, not when the BPE trains
    if config.shard_rows < 1:
        raise UserError(f"--shard-rows must be at least 1, got {config.shard_rows}")
    if config.decontaminate and not config.benchmarks:
        raise UserError("--decontaminate removes what overlaps the benchmarks: give them with --benchmark NAME=URL")
    if config.decontaminate and (regime.derived_from is not None or not regime.transform.deduplicates):
        raise UserError(
            f"--decontaminate removes documents before they are ordered: give it to the build of regime "
            f"{regime.derived_from or regime.name} from its input (derived builds keep what their source removed)"
        )
    if not 0 <= config.holdout < 1:
        raise UserError(f"--holdout must be in [0, 1), got {config.holdout}")
    if config.sample_docs < 0:
        raise UserError(f"--docs must be 0 (every document) or more, got {config.sample_docs}")
    if config.sample_docs and regime.derived_from is not None:
        raise UserError(f"--docs samples the input: give it to the build of regime {regime.derived_from} (derived builds keep its documents)")
    config.near()
    return regime.transform.check(config.settings)


def _input_bytes(config: BuildConfig, files: list[InputFile]) -> int:
    if config.source is not None:
        return sum(i.get("bytes", 0) for i in load_manifest(config.source)["inputs"])
    return sum(f.size for f in files) if files else EMBEDDED_INPUT_BYTES
