"""The phases stage: P in its seeded order, the holdout, the tokenizer, the phases, phase 1 through the
regime's transform, every shard written.

The order is a sort by a keyed hash of each id with the seed (never Ray's block order). With
`--docs N`, only its first N documents go on (a seeded sample; the rest are counted as
`not_sampled`). With `--holdout`, the documents whose keyed holdout hash falls in the given share
of its range are set aside in `OUT/holdout/` (in seeded order), in no phase; the tokenizer is
trained on the rest.
Phase 1 is the first ceil(|P|/2) remaining rows, phase 2 the rest (regimes with one phase keep all
of P in phase 1). Phase 2 and the holdout are written as they are; phase 1 goes to the regime's
transform, which writes it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import ray
from tokenizers import Tokenizer

from curate.curation.order import keyed_hash, order_keys
from curate.curation.storage import join
from curate.curation.tokenizer import (
    TOKENIZER_TRAIN_CHARS,
    encoder,
    eod_token_id,
    leading_texts,
    load_tokenizer,
    save_tokenizer,
    train_bpe,
)
from curate.jobs.datasets import read_parquet, sort_rows
from curate.jobs.shard_writer import ordered_blocks, write_dataset
from curate.regimes.base import Phase1Context, Phase1Transform

HASH_RANGE = 1 << 63  # keyed hashes are 63-bit non-negative integers


def seeded_order(docs: "ray.data.Dataset", seed: int) -> "ray.data.MaterializedDataset":
    """Documents sorted by (keyed hash of the id with the seed, id)."""
    salt = f"{seed}:order"
    keyed = docs.map_batches(lambda t: t.append_column("order_key", order_keys(t["id"], salt)), batch_format="pyarrow")
    return sort_rows(keyed, ["order_key", "id"])


def _with_holdout_mark(table: pa.Table, fraction: float, seed: int) -> pa.Table:
    """`held_out`: a keyed hash of the id with the seed below `fraction` of its range (a seeded share)."""
    keys = keyed_hash(table["id"].to_pylist(), f"{seed}:holdout")
    return table.append_column("held_out", pc.less(keys, int(fraction * HASH_RANGE)))


def _marked(table: pa.Table, held: bool) -> pa.Table:
    mark = table["held_out"]
    return table.filter(mark if held else pc.invert(mark)).drop_columns(["held_out"])


@ray.remote
def _trained_tokenizer(blocks: list["ray.ObjectRef"], vocab_size: int) -> tuple[str, dict]:
    """A BPE trained on the texts of `blocks`, in order, up to TOKENIZER_TRAIN_CHARS (fetched one block
    at a time), and what it trained on: the manifest's `tokenizer.trained`.

    rustbpe runs on rayon's threads, one per core unless told; the task holds one CPU, so it trains on
    one, as Ray gives OpenMP one thread (two threads took 41% more CPU for 12% less wall on the mixed
    corpus, and its merges ran slower in parallel). The setting stays with the worker process, whose
    later tasks hold one CPU too."""
    os.environ["RAYON_NUM_THREADS"] = "1"
    trained = {"trainer": f"rustbpe {version('rustbpe')}", "documents": 0, "characters": 0}

    def counted(texts: Iterable[str]) -> Iterator[str]:
        for text in texts:
            trained["documents"] += 1
            trained["characters"] += len(text)
            yield text

    texts = (text for block in blocks for text in ray.get(block)["text"].to_pylist())
    return train_bpe(counted(leading_texts(texts, TOKENIZER_TRAIN_CHARS)), vocab_size).to_str(), trained


def _tokenizer(
    ordered: "ray.data.Dataset", transform: Phase1Transform, path: str | None, vocab_size: int, out: str
) -> tuple[Tokenizer | None, dict | None]:
    """The given tokenizer, or one trained on the first TOKENIZER_TRAIN_CHARS of the seeded order
    (deterministic) in a Ray task, where the trainer's word counts never sit in the driver; saved to
    OUT, with what it was trained on."""
    if not transform.tokenizes:
        return None, None
    if path:
        tokenizer, trained = load_tokenizer(path), None
    else:
        tokenizer_json, trained = ray.get(_trained_tokenizer.remote(ordered.to_arrow_refs(), vocab_size))
        tokenizer = Tokenizer.from_str(tokenizer_json)
    save_tokenizer(tokenizer, join(out, "tokenizer.json"))
    return tokenizer, trained


@dataclass(frozen=True)
class PhasesWritten:
    """The manifest's phase entries and holdout, the tokenizer's entry, and what the transform added
    (`sections`) or dropped."""

    documents: int
    not_sampled: int
    phases: list
    holdout: dict | None
    sections: dict
    dropped: int
    tokenizer: dict | None


@dataclass(frozen=True)
class WritePhases:
    """Order the kept documents, take the sample, set the holdout aside, split the phases, tokenize and
    write phase 2 and the holdout, hand phase 1 to the transform."""

    name: ClassVar[str] = "phases"
    Result: ClassVar[type] = PhasesWritten
    docs: str
    transform: Phase1Transform
    settings: dict
    seed: int
    shard_rows: int
    tokenizer: str | None
    vocab_size: int
    holdout: float
    sample_docs: int
    out: str

    def run(self, work: str) -> PhasesWritten:
        ordered = seeded_order(read_parquet(self.docs), self.seed)
        _, schema = ordered_blocks(ordered)
        not_sampled = 0
        if self.sample_docs:
            ordered, rest = ordered.split_at_indices([self.sample_docs])
            not_sampled = rest.count()
        held = None
        if self.holdout:
            marked = ordered.map_batches(
                _with_holdout_mark, fn_kwargs={"fraction": self.holdout, "seed": self.seed}, batch_format="pyarrow"
            )
            held = marked.map_batches(_marked, fn_kwargs={"held": True}, batch_format="pyarrow").materialize()
            ordered = marked.map_batches(_marked, fn_kwargs={"held": False}, batch_format="pyarrow").materialize()
        tokenizer, trained = _tokenizer(ordered, self.transform, self.tokenizer, self.vocab_size, self.out)
        tokenizer_json = tokenizer.to_str() if tokenizer is not None else None
        write = partial(write_dataset, root=self.out, shard_rows=self.shard_rows, tokenizer_json=tokenizer_json, like=schema)
        rows = ordered.count()
        parts = ordered.split_at_indices([math.ceil(rows / 2)]) if self.transform.phases == 2 else [ordered]
        context = Phase1Context(
            settings=self.settings,
            seed=self.seed,
            out=self.out,
            tokenizer_json=tokenizer_json,
            phase1=lambda: parts[0],
            write=partial(write, folder="phase-1"),
        )
        output = self.transform.apply(context)
        phases = [output.phase] + [write(part, folder=f"phase-{number}") for number, part in enumerate(parts[1:], start=2)]
        return PhasesWritten(
            documents=rows,
            not_sampled=not_sampled,
            phases=phases,
            holdout=None if held is None else write(held, folder="holdout"),
            sections=output.sections,
            dropped=output.dropped,
            tokenizer=None if tokenizer is None else {
                "path": "tokenizer.json", "eod_token_id": eod_token_id(tokenizer), "vocab_size": tokenizer.get_vocab_size(),
                **encoder(tokenizer).manifest_entry(), **({"trained": trained} if trained else {}),
            },
        )
