"""`curate build`: the Ray job that builds a regime's corpus.

Stages of the coverage baseline (each resumable, see `jobs.runner`):

    ingest -> exact -> near -> write (seeded order, tokenizer, phases, shards) -> stats -> manifest

`build_base` runs them into a complete build of regime A. The other text regimes derive
from such a build (`--from OUT_A`, or one built first under `OUT/_work/base`): their
recipe's `derive` writes phase 1, and phase 2, quarantine, dedup evidence and tokenizer are
byte copies of A's.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Iterator

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import ray

from curation.embedded import EMBEDDED_URL, write_embedded_corpus
from curation.errors import UserError
from curation.ingest import QUARANTINE_SCHEMA, IngestConfig, ingest_file, reason_summary
from curation.manifest import FORMAT_VERSION, config_hash, is_complete, load_manifest, write_json_atomic, write_manifest
from curation.readers import InputFile, list_input_files, process_local
from curation.shards import ShardInfo, read_shard, write_shard
from curation.tokenizer import eod_token_id, load_tokenizer, save_tokenizer, train_bpe
from dedup.exact import exact_duplicates, reused_ids, text_keys
from jobs.runner import Progress, StageRunner, prepare_output
from curation.order import order_keys
from jobs.shard_writer import canonical_schema, ordered_blocks, write_range
from regimes import Recipe, get_recipe, recipe_record
from regimes.repetition import check_repetition, expand_copies, selected_count, with_selection_key

TOOL_VERSION = "0.1.0"
TOKENIZER_TRAIN_BYTES = 256 * 1024 * 1024
INTERNAL_COLUMNS = ("input_pos", "origin", "order_key")
PAIRS_SCHEMA = pa.schema(
    [("removed_id", pa.string()), ("kept_id", pa.string()), ("kind", pa.string()), ("jaccard", pa.float64())]
)


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides a build's bytes, and nothing that does not (paths, CPUs, verbosity)."""

    regime: str = "A"
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
    source: str | None = None
    repeat_fraction: float = 0.1
    repeat_times: int = 10
    teacher: dict = field(default_factory=dict)

    def hashed(self) -> dict:
        """The configuration as recorded: a derived build names its source by config hash, not path."""
        values = asdict(self)
        if self.source is not None:
            values["source"] = load_manifest(self.source)["config_hash"]
        return values


@dataclass(frozen=True)
class RunOptions:
    output: str
    resume: bool = False
    overwrite: bool = False
    num_cpus: int | None = None
    address: str | None = None
    quiet: bool = False


def init_ray(options: RunOptions) -> None:
    """Join the cluster named by --address or RAY_ADDRESS (as under `ray job submit`), else start a local Ray."""
    if not ray.is_initialized():
        address = options.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=options.num_cpus, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.issue_detectors_config.detectors = []
    context.shuffle_strategy = ray.data.context.ShuffleStrategy.SORT_SHUFFLE_PULL_BASED


PARTITION_BYTES = 128 * 1024 * 1024
BROADCAST_KEYS = 1_000_000


def set_parallelism(input_bytes: int) -> None:
    """Shuffle partitions and read blocks sized to the input: two per CPU, plus one per 128 MiB.

    Ray Data's default of 200 turns a small build into thousands of tiny tasks; a large one
    still gets enough partitions to bound each reducer's memory.
    """
    cpus = int(ray.cluster_resources().get("CPU", 2))
    partitions = max(2 * cpus, math.ceil(input_bytes / PARTITION_BYTES))
    context = ray.data.DataContext.get_current()
    context.default_hash_shuffle_parallelism = partitions
    context.read_op_min_num_blocks = partitions


def _partitions() -> int:
    return ray.data.DataContext.get_current().default_hash_shuffle_parallelism


def _filter_by_keys(left: "ray.data.Dataset", keys: "ray.data.Dataset", key: str, keep_matches: bool) -> "ray.data.Dataset":
    """Rows of `left` whose `key` is (keep_matches) or is not among `keys`'s.

    Like a broadcast hash join: up to BROADCAST_KEYS keys travel to every task as one Arrow
    array and each block is filtered with `is_in`; more keys take Ray Data's distributed join.
    Both give the same rows.
    """
    keys = keys.select_columns([key]).materialize()
    if keys.count() > BROADCAST_KEYS:
        join_type = "left_semi" if keep_matches else "left_anti"
        return left.join(keys, join_type, _partitions(), on=(key,))
    tables = [table for table in ray.get(keys.to_arrow_refs()) if table.num_rows]
    values = pa.concat_tables(tables).column(key).combine_chunks() if tables else pa.array([], pa.int64())

    def keep(table: pa.Table, values: pa.Array) -> pa.Table:
        member = pc.is_in(table[key], value_set=values.cast(table.schema.field(key).type))
        return table.filter(member if keep_matches else pc.invert(member))

    return left.map_batches(keep, fn_kwargs={"values": values}, batch_format="pyarrow")


def _attach_groups(rows: "ray.data.Dataset", key: str, survivor: str, name: str) -> "ray.data.Dataset":
    """`rows` of groups (by `key`) with more than one member, each with its group's min(`survivor`) as `name`.

    The per-group aggregate is vectorised; only the groups with duplicates are attached to the
    rows, by broadcast up to BROADCAST_KEYS groups and by a distributed join beyond.
    """
    from ray.data.aggregate import Count, Min

    groups = rows.groupby(key).aggregate(Count(), Min(survivor)).rename_columns({f"min({survivor})": name})
    groups = groups.map_batches(
        lambda t: t.filter(pc.greater(t["count()"], 1)).select([key, name]), batch_format="pyarrow"
    ).materialize()
    if groups.count() > BROADCAST_KEYS:
        return rows.join(groups, "inner", _partitions(), on=(key,))
    tables = [table for table in ray.get(groups.to_arrow_refs()) if table.num_rows]
    if not tables:
        return rows.limit(0)
    table = pa.concat_tables(tables)
    return rows.map_batches(
        lambda batch, groups: batch.join(groups.cast(pa.schema([batch.schema.field(key), groups.schema.field(name)])), key, join_type="inner"),
        fn_kwargs={"groups": table},
        batch_format="pyarrow",
    )


def _exclude(left: "ray.data.Dataset", removed: "ray.data.Dataset", key: str) -> "ray.data.Dataset":
    """Rows of `left` whose `key` is not among `removed`'s (an anti-join)."""
    return _filter_by_keys(left, removed, key, keep_matches=False)


def _only(left: "ray.data.Dataset", chosen: "ray.data.Dataset", key: str) -> "ray.data.Dataset":
    """Rows of `left` whose `key` is among `chosen`'s (a semi-join)."""
    return _filter_by_keys(left, chosen, key, keep_matches=True)


def _valid_rows(table: pa.Table) -> pa.Table:
    return table.filter(pc.is_null(table["reason"])).drop_columns(["reason"])


def _invalid_rows(table: pa.Table) -> pa.Table:
    return table.filter(pc.is_valid(table["reason"])).select(["origin", "reason", "raw", "input_pos"])


def _as_reused_id(table: pa.Table) -> pa.Table:
    """Quarantine rows for documents whose id an earlier record already used."""
    reason = pa.array(["duplicate_id"] * table.num_rows, pa.string())
    return pa.table({"origin": table["origin"], "reason": reason, "raw": table["raw"], "input_pos": table["input_pos"]})


def _with_text_key(table: pa.Table) -> pa.Table:
    return pa.table({"key": text_keys(table["text"]), "id": table["id"], "input_pos": table["input_pos"]})


def _write_ordered(ds: "ray.data.Dataset", key: str, root: str, folder: str, schema: pa.Schema, shard_rows: int) -> list[ShardInfo]:
    ordered = ds.sort(key).materialize()
    rows = ordered.count()
    if not rows:
        return [write_shard(schema.empty_table(), root, f"{folder}/shard-00000.arrow")]
    spans, _ = ordered_blocks(ordered)
    return write_range(spans, schema, 0, rows, root, folder, shard_rows)


# ------------------------------------------------------------------ the stages


def ingest_stage(config: BuildConfig, out: str, stage_dir: str) -> dict:
    """Read and validate every input record; quarantine the bad ones and reused ids."""
    if config.inputs:
        files = list_input_files(list(config.inputs))
        described = [{"url": f.url, "bytes": f.size} for f in files]
    else:
        corpus = f"{stage_dir}/embedded.jsonl"
        description = write_embedded_corpus(corpus)
        files = [InputFile(corpus, "python-stdlib.jsonl", "jsonl", os.path.getsize(corpus))]
        described = [{"url": EMBEDDED_URL, "description": description, "bytes": files[0].size}]
    ingest_config = IngestConfig(text_field=config.text_field, max_doc_bytes=config.max_doc_bytes)

    def read_files(batch: dict) -> Iterator[pa.Table]:
        rows = zip(batch["index"], batch["url"], batch["name"], batch["format"], batch["size"], batch["data"])
        for index, url, name, fmt, size, data in rows:
            if data is not None:
                fsspec.filesystem("memory").pipe(str(url), bytes(data))
            yield from ingest_file(InputFile(str(url), str(name), str(fmt), int(size)), int(index), ingest_config)

    listing = [
        {
            "index": i, "url": f.url, "name": f.name, "format": f.format, "size": f.size,
            "data": fsspec.filesystem("memory").cat(f.url) if process_local(f.url) else None,
        }
        for i, f in enumerate(files)
    ]
    listed = ray.data.from_items(listing, override_num_blocks=min(len(listing), 1000))
    listed.map_batches(read_files, batch_size=1, batch_format="numpy").write_parquet(f"{stage_dir}/records")
    records = ray.data.read_parquet(f"{stage_dir}/records")

    valid = records.map_batches(_valid_rows, batch_format="pyarrow")
    shared_ids = _attach_groups(valid.select_columns(["id", "input_pos"]), "id", "input_pos", "first_pos")
    reused = shared_ids.map_batches(reused_ids, batch_format="pyarrow").materialize()
    _exclude(valid, reused, "input_pos").drop_columns(["raw"]).write_parquet(f"{stage_dir}/docs")

    quarantine = records.map_batches(_invalid_rows, batch_format="pyarrow").union(
        _only(valid, reused, "input_pos").map_batches(_as_reused_id, batch_format="pyarrow")
    )
    shards = _write_ordered(quarantine, "input_pos", out, "quarantine", QUARANTINE_SCHEMA, config.shard_rows)
    reasons = Counter()
    for shard in shards:
        reasons.update(read_shard(out, shard.path)["reason"].to_pylist())
    total = records.count()
    quarantined = sum(s.rows for s in shards)
    return {
        "documents": total,
        "bytes": sum(f.size for f in files),
        "input": total,
        "quarantined": quarantined,
        "reasons": dict(sorted(reasons.items())),
        "inputs": described,
    }


def check_bad_fraction(info: dict, max_bad_fraction: float) -> None:
    """A mostly broken input is a user error, not a silently empty build."""
    if info["input"] == 0:
        raise UserError("the input holds no records")
    fraction = info["quarantined"] / info["input"]
    if fraction > max_bad_fraction:
        reasons = reason_summary(Counter(info["reasons"]))
        raise UserError(
            f"{info['quarantined']} of {info['input']} records ({fraction:.0%}) are invalid ({reasons}); "
            f"check --text-field and the input format, or raise --max-bad-fraction"
        )


def exact_stage(stage_dir: str, docs_dir: str) -> dict:
    """Remove documents whose normalized text equals a document with a smaller id."""
    docs = ray.data.read_parquet(docs_dir)
    keys = docs.map_batches(_with_text_key, batch_format="pyarrow").materialize()
    removed = _attach_groups(keys, "key", "id", "kept_id").map_batches(exact_duplicates, batch_format="pyarrow")
    removed = removed.materialize()
    removed.select_columns(["removed_id", "kept_id"]).write_parquet(f"{stage_dir}/pairs")
    _exclude(docs, removed, "input_pos").write_parquet(f"{stage_dir}/docs")
    count = removed.count()
    return {"exact_duplicates": count, "documents": docs.count(), "removed": count}


def near_stage(config: BuildConfig, stage_dir: str, docs_dir: str) -> dict:
    """Remove verified near duplicates (MinHash, LSH, connected components, exact Jaccard)."""
    from dedup.near import NearDedupConfig, near_duplicates

    docs = ray.data.read_parquet(docs_dir)
    near_config = NearDedupConfig(
        threshold=config.near_threshold,
        num_perm=config.num_perm,
        ngram_size=config.ngram_size,
        keep=config.keep,
        seed=config.seed,
    )
    pairs, stats = near_duplicates(docs.select_columns(["id", "text", "input_pos"]), near_config)
    pairs = pairs.materialize()
    pairs.write_parquet(f"{stage_dir}/pairs")
    _exclude(docs, pairs.rename_columns({"removed_id": "id"}), "id").write_parquet(f"{stage_dir}/docs")
    removed = pairs.count()
    return {"near_duplicates": removed, "documents": docs.count(), "removed": removed, "near": stats}


def _train_tokenizer(ordered: "ray.data.Dataset", vocab_size: int):
    """Train the build's BPE on the first TOKENIZER_TRAIN_BYTES of the seeded order (deterministic)."""

    def texts() -> Iterator[str]:
        seen = 0
        for batch in ordered.iter_batches(batch_format="pyarrow", batch_size=1024):
            for text in batch["text"].to_pylist():
                yield text
                seen += len(text)
                if seen >= TOKENIZER_TRAIN_BYTES:
                    return

    return train_bpe(texts(), vocab_size)


def write_stage(config: BuildConfig, out: str, docs_dir: str) -> dict:
    """Order the kept documents by a seeded key, split the phases, tokenize and write the shards."""
    docs = ray.data.read_parquet(docs_dir)
    salt = f"{config.seed}:order"
    keyed = docs.map_batches(
        lambda t: t.append_column("order_key", order_keys(t["id"], salt)), batch_format="pyarrow"
    )
    ordered = keyed.sort(["order_key", "id"]).materialize()
    if config.tokenizer:
        tokenizer = load_tokenizer(config.tokenizer)
    else:
        tokenizer = _train_tokenizer(ordered, config.vocab_size)
    save_tokenizer(tokenizer, f"{out}/tokenizer.json")
    rows = ordered.count()
    spans, schema = ordered_blocks(ordered)
    schema = canonical_schema(schema, drop=INTERNAL_COLUMNS)
    half = math.ceil(rows / 2)
    phases = []
    for name, start, end in (("phase-1", 0, half), ("phase-2", half, rows)):
        shards = write_range(spans, schema, start, end, out, name, config.shard_rows, tokenizer.to_str())
        phases.append(phase_entry(name, shards))
    return {
        "documents": rows,
        "phases": phases,
        "tokenizer": {"path": "tokenizer.json", "eod_token_id": eod_token_id(tokenizer), "vocab_size": tokenizer.get_vocab_size()},
    }


def manifest_phase(manifest: dict, name: str) -> dict:
    """The `phases` entry of a manifest called `name` ("phase-1" or "phase-2")."""
    return next(phase for phase in manifest["phases"] if phase["name"] == name)


def phase_entry(name: str, shards: list[ShardInfo]) -> dict:
    return {
        "name": name,
        "rows": sum(s.rows for s in shards),
        "tokens": sum(s.tokens for s in shards),
        "shards": [s.to_dict() for s in shards],
    }


def read_parquet_table(path: str, columns: list[str]) -> pa.Table:
    """A small stage output read on the driver; a stage that wrote no rows left no files."""
    import pyarrow.parquet as pq

    fs, base = fsspec.core.url_to_fs(path)
    files = sorted(fs.glob(f"{base}/*.parquet")) if fs.exists(base) else []
    tables = [pq.read_table(f, columns=columns, filesystem=fs) for f in files]
    return pa.concat_tables(tables) if tables else pa.table({c: pa.array([], pa.string()) for c in columns})


def write_pairs(out: str, exact_dir: str, near_dir: str | None) -> int:
    """OUT/dedup/pairs.arrow: every removed duplicate with the document kept for it, sorted by removed id."""
    exact = read_parquet_table(exact_dir, ["removed_id", "kept_id"])
    parts = [
        pa.table(
            {
                "removed_id": exact["removed_id"].cast(pa.string()),
                "kept_id": exact["kept_id"].cast(pa.string()),
                "kind": pa.array(["exact"] * exact.num_rows, pa.string()),
                "jaccard": pa.array([1.0] * exact.num_rows, pa.float64()),
            }
        )
    ]
    if near_dir is not None:
        near = read_parquet_table(near_dir, PAIRS_SCHEMA.names)
        if near.num_rows:
            parts.append(near.cast(PAIRS_SCHEMA))
    pairs = pa.concat_tables(parts).sort_by([("removed_id", "ascending"), ("kind", "ascending")])
    write_shard(pairs, out, "dedup/pairs.arrow")
    return pairs.num_rows


def build_stats(out: str, dedup: dict, reference: str | None, teacher: dict | None = None) -> dict:
    """stats.json of the build; a D build's phase 1 also records the teacher's statuses and token counts."""
    from jobs.stats_job import compute_build_stats

    stats = compute_build_stats(out, dedup, reference)
    if teacher is not None:
        stats["phases"]["phase-1"]["teacher"] = teacher
    write_json_atomic(out, "stats.json", stats)
    return stats


def build_base(config: BuildConfig, out: str, runner: StageRunner) -> dict:
    """Run the coverage baseline's stages into `out` and return its manifest (written last)."""
    ingest = runner.run("ingest", lambda d: ingest_stage(config, out, d))
    check_bad_fraction(ingest, config.max_bad_fraction)
    exact = runner.run("exact", lambda d: exact_stage(d, f"{runner.path('ingest')}/docs"))
    docs_dir = f"{runner.path('exact')}/docs"
    near_dir = None
    near = {"near_duplicates": 0}
    if config.near_dedup:
        near = runner.run("near", lambda d: near_stage(config, d, docs_dir))
        near_dir = f"{runner.path('near')}/pairs"
        docs_dir = f"{runner.path('near')}/docs"
    written = runner.run("write", lambda d: write_stage(config, out, docs_dir))
    counts = {
        "input": ingest["input"],
        "quarantined": ingest["quarantined"],
        "exact_duplicates": exact["exact_duplicates"],
        "near_duplicates": near["near_duplicates"],
        "kept": written["documents"],
    }
    if sum(v for k, v in counts.items() if k != "input") != counts["input"]:
        raise RuntimeError(f"counts do not add up: {counts}")
    runner.run("pairs", lambda d: {"pairs": write_pairs(out, f"{runner.path('exact')}/pairs", near_dir)})
    dedup = counts | {"quarantine_reasons": ingest["reasons"], "near": near.get("near", {})}
    runner.run("stats", lambda d: {"stats": bool(build_stats(out, dedup, None))})
    manifest = make_manifest(get_recipe("A"), config, written["phases"], counts, written["tokenizer"], ingest["inputs"])
    manifest["dedup"] = dedup
    write_manifest(out, manifest)
    return manifest


def make_manifest(recipe: Recipe, config: BuildConfig, phases: list[dict], counts: dict, tokenizer: dict, inputs: list) -> dict:
    hashed = config.hashed()
    return {
        "format_version": FORMAT_VERSION,
        "regime": recipe.name,
        "recipe": recipe_record(recipe, recipe_settings(recipe, config)),
        "phases": phases,
        "counts": counts,
        "tokenizer": tokenizer,
        "config": hashed,
        "config_hash": config_hash(hashed),
        "inputs": inputs,
        "tool_version": TOOL_VERSION,
    }


def copy_file(source: str, out: str, relpath: str) -> None:
    """Byte copy of `source/relpath` to `out/relpath` (B's shards and every derived phase 2)."""
    with fsspec.open(f"{source}/{relpath}", "rb") as handle:
        data = handle.read()
    fs, base = fsspec.core.url_to_fs(out)
    fs.makedirs(os.path.dirname(f"{base}/{relpath}"), exist_ok=True)
    with fs.open(f"{base}/{relpath}.tmp", "wb") as handle:
        handle.write(data)
    fs.mv(f"{base}/{relpath}.tmp", f"{base}/{relpath}")


def derive(config: BuildConfig, source: str, out: str, runner: StageRunner) -> dict:
    """Build a derived regime from the complete A build at `source`."""
    source_manifest = load_manifest(source)
    if source_manifest["regime"] != "A":
        raise UserError(f"--from must name a complete regime A build; {source} is regime {source_manifest['regime']}")
    recipe = get_recipe(config.regime)
    shared = ["tokenizer.json", "dedup/pairs.arrow"]
    phase_two = manifest_phase(source_manifest, "phase-2")
    quarantine = sorted(fs_path for fs_path in _list(source, "quarantine"))
    for relpath in shared + quarantine + [s["path"] for s in phase_two["shards"]]:
        copy_file(source, out, relpath)
    derive_phase1 = {"identity": copy_phase1, "repeat": repeat_phase1, "teacher": teacher_phase1}[recipe.phase1_transform]
    phase_one = runner.run("derive", lambda d: {"phase": derive_phase1(config, source, source_manifest, out)})
    phases = [phase_one["phase"], phase_two]
    dedup = source_manifest.get("dedup", {})
    runner.run("stats", lambda d: {"stats": bool(build_stats(out, dedup, source, phase_one["phase"].get("teacher")))})
    manifest = make_manifest(
        recipe, config, phases, source_manifest["counts"], source_manifest["tokenizer"], source_manifest["inputs"]
    )
    manifest["dedup"] = dedup
    manifest["source"] = {"config_hash": source_manifest["config_hash"], "regime": "A"}
    write_manifest(out, manifest)
    return manifest


def _list(root: str, folder: str) -> list[str]:
    fs, base = fsspec.core.url_to_fs(root)
    return [f"{folder}/{os.path.basename(p)}" for p in fs.glob(f"{base}/{folder}/shard-*.arrow")]


def run_build(config: BuildConfig, options: RunOptions) -> dict:
    """Build `config.regime` into `options.output`; returns the manifest and the stage timings."""
    recipe = get_recipe(config.regime)
    validate(recipe, config)
    input_bytes = _input_bytes(config)
    prepare_output(options.output, options.resume, options.overwrite)
    progress = Progress(options.quiet)
    runner = StageRunner(options.output, progress)
    init_ray(options)
    set_parallelism(input_bytes)
    runner.check_config({"config": asdict(config)})
    progress.line(f"curate build --regime {recipe.name} -> {options.output}")
    if recipe.name == "A":
        manifest = build_base(config, options.output, runner)
    else:
        source = config.source
        if source is None:
            source = runner.path("base")
            base_runner = StageRunner(source, progress)
            if not is_complete(source):
                build_base(_base_config(config), source, base_runner)
        manifest = derive(config, source, options.output, runner)
    return {"manifest": manifest, "timings": runner.timings}


def _input_bytes(config: BuildConfig) -> int:
    if config.source is not None:
        return sum(i.get("bytes", 0) for i in load_manifest(config.source)["inputs"])
    return sum(f.size for f in list_input_files(list(config.inputs))) if config.inputs else 16 * 1024 * 1024


def _base_config(config: BuildConfig) -> BuildConfig:
    return replace(config, regime="A", repeat_fraction=0.1, repeat_times=10, teacher={})


def recipe_settings(recipe: Recipe, config: BuildConfig) -> dict:
    """The settings of a recipe's phase-1 transform, as the manifest records them."""
    if recipe.phase1_transform == "repeat":
        return {
            "repeat_fraction": config.repeat_fraction,
            "repeat_times": config.repeat_times,
            "seed": config.seed,
            "remainder": "ceil(rows x fraction) documents are selected and copied; the surplus copies "
            "with the largest seeded placement keys are dropped so phase 1 keeps exactly A's row count",
        }
    if recipe.phase1_transform == "teacher":
        return dict(config.teacher)
    return {}


def validate(recipe: Recipe, config: BuildConfig) -> None:
    """Refuse option combinations that cannot make the regime, with one line each."""
    if recipe.name == "A" and config.source is not None:
        raise UserError("--from derives B, C or D from an A build; regime A is built from --input")
    if recipe.phase1_transform == "repeat":
        check_repetition(config.repeat_fraction, config.repeat_times)
    if config.source is not None:
        load_manifest(config.source)
    if config.tokenizer is not None:
        load_tokenizer(config.tokenizer)
    if config.shard_rows < 1:
        raise UserError(f"--shard-rows must be at least 1, got {config.shard_rows}")


def read_shards(root: str, relpaths: list[str]) -> "ray.data.Dataset":
    """A dataset over existing shards, one read task per shard, in shard order."""
    def read(batch: dict) -> Iterator[pa.Table]:
        for relpath in batch["relpath"]:
            yield read_shard(root, str(relpath))

    listing = ray.data.from_items([{"relpath": p} for p in relpaths], override_num_blocks=max(1, len(relpaths)))
    return listing.map_batches(read, batch_size=1, batch_format="numpy")


def copy_phase1(config: BuildConfig, source: str, source_manifest: dict, out: str) -> dict:
    """Regime B: A's phase-1 shards, byte for byte."""
    phase = manifest_phase(source_manifest, "phase-1")
    for shard in phase["shards"]:
        copy_file(source, out, shard["path"])
    return phase


def repeat_phase1(config: BuildConfig, source: str, source_manifest: dict, out: str) -> dict:
    """Regime C: a seeded subset of A's phase 1, each repeated, copies spread by a seeded shuffle."""
    phase = manifest_phase(source_manifest, "phase-1")
    rows = phase["rows"]
    docs = read_shards(source, [s["path"] for s in phase["shards"]])
    keyed = docs.map_batches(lambda t: with_selection_key(t, config.seed), batch_format="pyarrow")
    selected = keyed.sort(["selection_key", "id"]).limit(selected_count(rows, config.repeat_fraction))
    copies = selected.map_batches(
        lambda t: expand_copies(t.drop_columns(["selection_key"]), config.repeat_times, config.seed),
        batch_format="pyarrow",
    )
    ordered = copies.sort(["placement_key", "id", "copy_index"]).materialize()
    spans, schema = ordered_blocks(ordered)
    shards = write_range(spans, canonical_schema(schema, drop=("placement_key",)), 0, rows, out, "phase-1", config.shard_rows)
    return phase_entry("phase-1", shards)


def teacher_phase1(config: BuildConfig, source: str, source_manifest: dict, out: str) -> dict:
    """Regime D: every phase-1 document rewritten by the teacher, resumable per shard."""
    from curation.teacher.config import TeacherConfig
    from jobs.teacher_job import rewrite_phase1

    phase = manifest_phase(source_manifest, "phase-1")
    shards, stats = rewrite_phase1(
        source, [s["path"] for s in phase["shards"]], out, f"{source}/tokenizer.json", TeacherConfig(**config.teacher)
    )
    return phase_entry("phase-1", shards) | {"teacher": stats}
