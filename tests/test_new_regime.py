"""Adding a regime is one module and one registry entry: a regime defined here builds end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curate import regimes
from curate.curation.shards import read_shard
from curate.curation.tokenizer import load_tokenizer
from curate.jobs.build import BuildConfig, RunOptions, run_build
from curate.regimes.base import Phase1Context, Phase1Output, Phase1Transform
from test_build import corpus, write_jsonl


def _upper(table: pa.Table) -> pa.Table:
    table = table.drop_columns(["input_ids"])
    return table.set_column(table.schema.get_field_index("text"), "text", pc.utf8_upper(table["text"]))


class Uppercase(Phase1Transform):
    """Phase 1 in capitals; the writer tokenizes the new text with the family's tokenizer."""

    name = "uppercase"

    def apply(self, context: Phase1Context) -> Phase1Output:
        return Phase1Output(context.write(context.phase1().map_batches(_upper, batch_format="pyarrow")))


@pytest.fixture
def registered(ray_local):
    # Ray workers cannot import a test module; ship this module's functions by value instead.
    ray_local.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    regime = regimes.register(
        regimes.Regime("Z", "phase 1 in capitals, constant LR", Uppercase(), {"lr_decay_style": "constant"}, derived_from="A")
    )
    yield regime
    del regimes.REGISTRY["Z"]
    ray_local.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _rows(out: Path, manifest: dict, name: str) -> list[dict]:
    phase = next(p for p in manifest["phases"] if p["name"] == name)
    return [row for s in phase["shards"] for row in read_shard(str(out), s["path"]).to_pylist()]


def test_a_regime_registered_in_a_test_module_builds_end_to_end(registered, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", corpus(60))
    options = dict(near_dedup=False, vocab_size=300, shard_rows=20)
    run_build(BuildConfig(inputs=(str(source),), **options), RunOptions(output=str(tmp_path / "A"), quiet=True))
    manifest = run_build(
        BuildConfig(regime="z", source=str(tmp_path / "A"), **options), RunOptions(output=str(tmp_path / "Z"), quiet=True)
    )["manifest"]
    a = json.loads((tmp_path / "A" / "manifest.json").read_text())

    assert manifest["regime"] == "Z"
    assert manifest["recipe"]["phase1_transform"] == "uppercase"
    assert manifest["recipe"]["train_overrides"] == {"lr_decay_style": "constant"}
    tokenizer = load_tokenizer(str(tmp_path / "A" / "tokenizer.json"))
    before, after = _rows(tmp_path / "A", a, "phase-1"), _rows(tmp_path / "Z", manifest, "phase-1")
    assert [r["id"] for r in after] == [r["id"] for r in before]
    for old, new in zip(before, after):
        assert new["text"] == old["text"].upper() != old["text"]
        assert new["input_ids"] == tokenizer.encode(new["text"]).ids
    assert manifest["phases"][1] == next(p for p in a["phases"] if p["name"] == "phase-2")
    assert manifest["counts"] == a["counts"]
    stats = json.loads((tmp_path / "Z" / "stats.json").read_text())
    assert stats["phases"]["phase-1"]["documents"] == len(after)
