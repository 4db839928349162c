"""Training data: packing, phases in their halves, seeded order, and the Megatron export."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest

from curate.curation.shards import read_shard
from test_trainer_support import make_build, stdlib_documents
from curate.trainer.data import load_packed_phases
from curate.trainer.export import export_megatron

SEQ = 32


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return make_build(tmp_path_factory.mktemp("trainer-data"), stdlib_documents(12))


def phase_documents(build, name):
    manifest = json.loads((build / "manifest.json").read_text())
    phase = next(p for p in manifest["phases"] if p["name"] == name)
    rows = []
    for shard in phase["shards"]:
        rows += read_shard(str(build), shard["path"]).column("input_ids").to_pylist()
    return rows, manifest["tokenizer"]["eod_token_id"]


def test_documents_are_packed_with_an_end_of_document_token(build):
    packed, _ = load_packed_phases(str(build), SEQ, 100, seed=1)
    documents, eod = phase_documents(build, "phase-1")
    expected = np.concatenate([np.asarray(doc + [eod]) for doc in documents])
    assert np.array_equal(packed.phases[0].tokens, expected)
    assert packed.phases[0].sequences == (len(expected) - 1) // SEQ
    second = packed.phases[0].sequence(1)
    assert len(second) == SEQ + 1 and np.array_equal(second, expected[SEQ : 2 * SEQ + 1])


def test_phase_one_fills_exactly_the_first_half_and_cycles_epochs(build):
    phase_1_sequences = load_packed_phases(str(build), SEQ, 2, seed=1)[0].phases[0].sequences
    total = 2 * (2 * phase_1_sequences + 3)  # phase 1 runs two epochs and a bit
    packed, _ = load_packed_phases(str(build), SEQ, total, seed=1)
    located = [packed.sequence_index(k) for k in range(total)]
    assert all(phase == 0 for phase, _ in located[: total // 2])
    assert all(phase == 1 for phase, _ in located[total // 2 :])
    first_half = [sequence for _, sequence in located[: total // 2]]
    n = phase_1_sequences
    assert sorted(first_half[:n]) == list(range(n)) == sorted(first_half[n : 2 * n])
    assert first_half[:n] != first_half[n : 2 * n]  # each epoch has its own order
    assert packed.epochs()["phase-1"] == pytest.approx((total // 2) / n)


def test_order_is_a_pure_function_of_seed_and_sample_index(build):
    one, _ = load_packed_phases(str(build), SEQ, 64, seed=7)
    two, _ = load_packed_phases(str(build), SEQ, 64, seed=7)
    other, _ = load_packed_phases(str(build), SEQ, 64, seed=8)
    assert np.array_equal(one.batch(range(40, 48)), two.batch(range(40, 48)))
    # Workers' slices of a global batch, concatenated, are the global batch itself.
    assert np.array_equal(np.concatenate([two.batch(range(40, 44)), two.batch(range(44, 48))]), one.batch(range(40, 48)))
    assert not np.array_equal(one.batch(range(0, 16)), other.batch(range(0, 16)))


def test_a_build_behind_an_fsspec_url_reads_the_same(build):
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.put(str(build), f"/{build.name}", recursive=True)
    local, _ = load_packed_phases(str(build), SEQ, 64, seed=3)
    remote, _ = load_packed_phases(f"memory://{build.name}", SEQ, 64, seed=3)
    assert np.array_equal(local.batch(range(0, 64)), remote.batch(range(0, 64)))


def test_megatron_export_reads_back_with_megatron_core(build, tmp_path):
    from typer.testing import CliRunner

    from curate.jobs.cli import app

    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    prefix = tmp_path / "megatron" / "corpus"
    result = CliRunner().invoke(app, ["export", "megatron", str(build), "--output", str(prefix)])
    assert result.exit_code == 0, result.output
    prefixes = [f"{prefix}_phase-1_text_document", f"{prefix}_phase-2_text_document"]
    for prefix, name in zip(prefixes, ("phase-1", "phase-2")):
        documents, eod = phase_documents(build, name)
        dataset = indexed.IndexedDataset(prefix)
        assert len(dataset) == len(documents)
        assert dataset.index.dtype == np.uint16
        for index, document in enumerate(documents):
            assert dataset[index].tolist() == document + [eod]
        assert dataset.document_indices.tolist() == list(range(len(documents) + 1))


def test_megatron_export_leaves_no_partial_phase(build, tmp_path):
    """A phase whose shard cannot be read leaves neither file of its pair, nor an earlier export's index."""
    copy = tmp_path / "build"
    shutil.copytree(build, copy)
    prefix = tmp_path / "megatron" / "corpus"
    export_megatron(str(copy), str(prefix))
    manifest = json.loads((copy / "manifest.json").read_text())
    shard = copy / manifest["phases"][1]["shards"][-1]["path"]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(pa.ArrowInvalid):
        export_megatron(str(copy), str(prefix))
    written = sorted(p.name for p in prefix.parent.iterdir())
    assert written == ["corpus_phase-1_text_document.bin", "corpus_phase-1_text_document.idx", "corpus_phase-2_text_document.bin"]
    assert (prefix.parent / "corpus_phase-2_text_document.bin").stat().st_mtime_ns < shard.stat().st_mtime_ns
