"""Adding a regime is one module and one registry entry: a regime defined here, with a setting of its
own, gets its option in `curate build`, builds end to end and records the setting."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from curate import regimes
from curate.curation.errors import UserError
from curate.curation.shards import read_shard
from curate.curation.tokenizer import load_tokenizer
from curate.regimes.base import Phase1Context, Phase1Output, Phase1Transform
from test_build import corpus, write_jsonl


@dataclass(frozen=True)
class ShoutSettings:
    exclamations: int = field(default=1, metadata={"help": "Exclamation marks after each shouted document."})

    def __post_init__(self) -> None:
        if self.exclamations < 0:
            raise UserError(f"--exclamations must not be negative, got {self.exclamations}")


def _shout(table: pa.Table, exclamations: int) -> pa.Table:
    table = table.drop_columns(["input_ids"])
    shouted = pc.binary_join_element_wise(pc.utf8_upper(table["text"]), "!" * exclamations, "")
    return table.set_column(table.schema.get_field_index("text"), "text", shouted)


class Shout(Phase1Transform):
    """Phase 1 in capitals with exclamation marks; the writer tokenizes the new text with the family's tokenizer."""

    name = "shout"
    settings_type = ShoutSettings

    def apply(self, context: Phase1Context) -> Phase1Output:
        times = context.settings["exclamations"]
        return Phase1Output(context.write(context.phase1().map_batches(_shout, fn_kwargs={"exclamations": times}, batch_format="pyarrow")))


@pytest.fixture
def registered(ray_local):
    # Ray workers cannot import a test module; ship this module's functions by value instead.
    ray_local.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    regime = regimes.register(
        regimes.Regime("Z", "phase 1 shouted, constant LR", Shout(), {"lr_decay_style": "constant"}, derived_from="A")
    )
    yield regime
    del regimes.REGISTRY["Z"]
    ray_local.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _rows(out: Path, manifest: dict, name: str) -> list[dict]:
    phase = next(p for p in manifest["phases"] if p["name"] == name)
    return [row for s in phase["shards"] for row in read_shard(str(out), s["path"]).to_pylist()]


def test_a_regime_registered_in_a_test_module_builds_end_to_end(registered, tmp_path):
    from curate.jobs.cli import make_app

    app = make_app()
    assert "--exclamations" in CliRunner().invoke(app, ["build", "--help"], terminal_width=200).output
    source = write_jsonl(tmp_path / "in.jsonl", corpus(60))
    options = ["--no-near-dedup", "--vocab-size", "300", "--shard-rows", "20", "--quiet", "--num-cpus", "2"]
    result = CliRunner().invoke(app, ["build", "--input", str(source), "--output", str(tmp_path / "A"), *options])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        app, ["build", "--regime", "z", "--from", str(tmp_path / "A"), "--output", str(tmp_path / "Z"), "--exclamations", "3", *options]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "Z" / "manifest.json").read_text())
    a = json.loads((tmp_path / "A" / "manifest.json").read_text())

    assert manifest["regime"] == "Z"
    assert manifest["recipe"]["phase1_transform"] == "shout"
    assert manifest["recipe"]["settings"] == manifest["config"]["settings"] == {"exclamations": 3}
    assert manifest["recipe"]["train_overrides"] == {"lr_decay_style": "constant"}
    tokenizer = load_tokenizer(str(tmp_path / "A" / "tokenizer.json"))
    before, after = _rows(tmp_path / "A", a, "phase-1"), _rows(tmp_path / "Z", manifest, "phase-1")
    assert [r["id"] for r in after] == [r["id"] for r in before]
    for old, new in zip(before, after):
        assert new["text"] == old["text"].upper() + "!!!"
        assert new["input_ids"] == tokenizer.encode(new["text"]).ids
    assert manifest["phases"][1] == next(p for p in a["phases"] if p["name"] == "phase-2")
    assert manifest["counts"] == a["counts"]
    stats = json.loads((tmp_path / "Z" / "stats.json").read_text())
    assert stats["phases"]["phase-1"]["documents"] == len(after)

    refused = CliRunner().invoke(
        app, ["build", "--regime", "Z", "--from", str(tmp_path / "A"), "--output", str(tmp_path / "Z2"), "--exclamations", "-1"]
    )
    assert isinstance(refused.exception, UserError) and "--exclamations must not be negative" in str(refused.exception)
    assert not (tmp_path / "Z2" / "_work").exists()
