"""Training data from a build: packed, phase-aware and deterministic.

Each phase's documents are concatenated in manifest order with an end-of-document token
after each, and cut into sequences of `seq_length + 1` tokens that overlap by one (the
input and its shifted target). Sample `k` of training (0-based, counted over the whole
run) is a pure function of the seed and `k`:

- samples `[0, T/2)` come from phase 1 and `[T/2, T)` from phase 2 (T = trained samples);
- inside a phase, local sample `j` is epoch `j // n` and position `j % n` of that epoch's
  seeded permutation of the phase's `n` sequences, so a short phase cycles, each epoch in
  a fresh order.

So a resumed run sees exactly the samples an uninterrupted one would, and a global batch
holds the same samples whatever the number of workers (each worker takes its slice).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from curate.curation.errors import UserError
from curate.curation.manifest import canonical_json, load_manifest
from curate.curation.shards import read_shard

PHASES = ("phase-1", "phase-2")


def shard_tokens(build: str, shard: dict, eod_token_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The documents of one shard as one int32 stream, each followed by the EOD token, and each
    document's length in that stream (its tokens and the EOD)."""
    table = read_shard(build, shard["path"])
    if "input_ids" not in table.column_names:
        raise UserError(f"{build}/{shard['path']} has no input_ids column (build it with a tokenizer)")
    documents = table.column("input_ids").combine_chunks()
    offsets = documents.offsets.to_numpy()
    values = documents.values.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    values = values[offsets[0] : offsets[-1]]
    return np.insert(values, offsets[1:] - offsets[0], np.int32(eod_token_id)), np.diff(offsets) + 1


def phase_tokens(build: str, phase: dict, eod_token_id: int) -> np.ndarray:
    """All documents of one phase as one int32 stream, each followed by the EOD token."""
    streams = [shard_tokens(build, shard, eod_token_id)[0] for shard in phase["shards"]]
    return np.concatenate(streams) if streams else np.zeros(0, dtype=np.int32)


def data_fingerprint(manifest: dict, seed: int, seq_length: int) -> str:
    """Changes exactly when the samples of a run would change: shard contents, seed, length."""
    shards = {phase["name"]: [shard["sha256"] for shard in phase["shards"]] for phase in manifest["phases"]}
    identity = {"shards": shards, "seed": seed, "seq_length": seq_length,
                "eod_token_id": manifest["tokenizer"]["eod_token_id"]}
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]


def packed_sequences(stream_tokens: int, seq_length: int) -> int:
    """Sequences of `seq_length + 1` tokens, overlapping by one, that a stream of this length packs into."""
    return max(0, (stream_tokens - 1) // seq_length)


def phase_samples(train_samples: int) -> list[int]:
    """Samples from phase 1 and from phase 2: the first half of training, then the rest."""
    return [train_samples // 2, train_samples - train_samples // 2]


@dataclass
class PhaseData:
    name: str
    tokens: np.ndarray
    seq_length: int

    @property
    def sequences(self) -> int:
        return packed_sequences(len(self.tokens), self.seq_length)

    def sequence(self, index: int) -> np.ndarray:
        start = index * self.seq_length
        return self.tokens[start : start + self.seq_length + 1]


class PackedPhases:
    """Maps a global sample index to its `seq_length + 1` tokens (phase 1, then phase 2)."""

    def __init__(self, phases: list[PhaseData], train_samples: int, seed: int):
        for phase in phases:
            if phase.sequences == 0:
                raise UserError(f"{phase.name} has fewer than seq_length + 1 tokens; nothing to train on")
        self.phases = phases
        self.train_samples = train_samples
        self.seed = seed
        self.boundary = phase_samples(train_samples)[0]

    def locate(self, sample: int) -> tuple[int, int]:
        """(phase index, local sample index) of a global sample index."""
        if sample < self.boundary:
            return 0, sample
        return 1, sample - self.boundary

    def phase_name(self, sample: int) -> str:
        return self.phases[self.locate(sample)[0]].name

    @lru_cache(maxsize=4)
    def permutation(self, phase_index: int, epoch: int) -> np.ndarray:
        generator = np.random.Generator(np.random.PCG64([self.seed, phase_index, epoch]))
        return generator.permutation(self.phases[phase_index].sequences)

    def sequence_index(self, sample: int) -> tuple[int, int]:
        """(phase index, index of the packed sequence within its phase) of a global sample."""
        phase_index, local = self.locate(sample)
        epoch, position = divmod(local, self.phases[phase_index].sequences)
        return phase_index, int(self.permutation(phase_index, epoch)[position])

    def sample(self, sample: int) -> np.ndarray:
        phase_index, sequence = self.sequence_index(sample)
        return self.phases[phase_index].sequence(sequence)

    def batch(self, samples: range) -> np.ndarray:
        """Token rows (len(samples), seq_length + 1) for consecutive global sample indices."""
        return np.stack([self.sample(index) for index in samples]).astype(np.int64)

    def epochs(self) -> dict[str, float]:
        """How many passes over each phase's sequences the run makes."""
        return {phase.name: count / phase.sequences for phase, count in zip(self.phases, phase_samples(self.train_samples))}


def phase_sequences(phase: dict, seq_length: int) -> int:
    """A manifest phase's packed sequences without reading it: its stream is its tokens plus one EOD per document."""
    return packed_sequences(phase["tokens"] + phase["rows"], seq_length)


def manifest_epochs(manifest: dict, seq_length: int, train_samples: int) -> dict[str, float]:
    """How many passes over each phase's sequences a run of `train_samples` makes (as PackedPhases.epochs)."""
    by_name = {phase["name"]: phase for phase in manifest["phases"]}
    counts = phase_samples(train_samples)
    return {name: count / max(1, phase_sequences(by_name[name], seq_length)) for name, count in zip(PHASES, counts)}


def load_packed_phases(build: str, seq_length: int, train_samples: int, seed: int) -> tuple[PackedPhases, dict]:
    """Read a complete build's phases; returns the packed data and the build's manifest."""
    manifest = load_manifest(build)
    by_name = {phase["name"]: phase for phase in manifest["phases"]}
    missing = [name for name in PHASES if name not in by_name]
    if missing:
        raise UserError(f"{build} has no {', '.join(missing)} in its manifest")
    eod = int(manifest["tokenizer"]["eod_token_id"])
    phases = [PhaseData(name, phase_tokens(build, by_name[name], eod), seq_length) for name in PHASES]
    return PackedPhases(phases, train_samples, seed), manifest

