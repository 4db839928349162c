"""What a regime's phase-1 transform is: the contract between `regimes/` and the build stages.

A build makes P (the input after quarantine and de-duplication, in a seeded order), splits it
into phases and hands phase 1 to its regime's transform through a `Phase1Context`. The
transform returns the phase-1 entry of the manifest after writing it with `context.write`.
Everything else (ingest, dedup, order, phase 2, stats, manifest) is the same for every regime.

A transform also says what a document of its regime is (`validate`, `document_types`) and
whether P is de-duplicated, tokenized and split in two: text regimes keep the defaults; the
vision-language regime overrides them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Mapping

import pyarrow as pa

from curate.curation.errors import UserError
from curate.curation.ingest import IngestConfig, validate
from curate.curation.readers import RawRecord


@dataclass(frozen=True)
class Phase1Context:
    """What a transform gets: phase 1 in P's order, its settings, and a writer of shards.

    `phase1()` reads the phase-1 rows as a Ray dataset. A derived build (`--from`) also names
    the source build and its phase-1 shards, for transforms that work shard by shard.
    `write(dataset, drop)` writes rows in dataset order as `OUT/phase-1/shard-NNNNN.arrow`
    (tokenizing them when `input_ids` is missing) and returns the manifest's phase entry.
    """

    settings: dict
    seed: int
    out: str
    tokenizer_json: str | None
    phase1: Callable[[], Any]
    write: Callable[..., dict]
    source: str | None = None
    source_shards: tuple[str, ...] = ()


@dataclass(frozen=True)
class Phase1Output:
    """The phase-1 entry of the manifest, sections the transform adds to manifest and stats, and
    how many documents it dropped (they leave `counts.kept` for `counts.dropped`)."""

    phase: dict
    sections: dict = field(default_factory=dict)
    dropped: int = 0


class Phase1Transform:
    """Base of every transform: text documents, de-duplicated, tokenized, two phases, no settings.

    `settings_type`: the transform's settings as one frozen dataclass (None: it has none). Fields
        with `metadata["help"]` become options of `curate build` and `curate experiment`
        (`metadata["option"]` names one otherwise named after the field); `__post_init__`
        refuses values that cannot work, with a one-line UserError.
    `columns`: the shard columns the transform adds (input metadata of those names is renamed).
    `sections`: the top-level manifest and stats.json sections its output adds.
    `embedded_input`: whether the embedded default corpus (text) is a valid input of the regime.
    `teacher`: whether phase 1 goes through the teacher LLM (what `curate plan` estimates).
    `shard_counts` and `statistics`: what its shards add to stats.json; `copies`: how many times it
        repeats a phase-1 document (what the experiment's exposure reports).
    """

    name = "identity"
    settings_type: type | None = None
    columns: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()
    deduplicates = True
    tokenizes = True
    phases = 2
    embedded_input = True
    teacher = False
    document_types: Mapping[str, pa.DataType] = {"id": pa.string(), "text": pa.string()}

    def check(self, settings: Mapping[str, Any]) -> dict:
        """The settings as recorded in the manifest: those given, completed with the defaults and checked."""
        if self.settings_type is None:
            if settings:
                raise UserError(f"the {self.name} transform takes no settings, got {', '.join(sorted(settings))}")
            return {}
        try:
            return asdict(self.settings_type(**settings))
        except TypeError as error:  # a name the settings do not have
            raise UserError(f"the {self.name} transform's settings are {', '.join(f.name for f in fields(self.settings_type))}: {error}") from None

    def validate(self, record: RawRecord, ingest: IngestConfig, settings: dict) -> tuple[dict | None, str | None]:
        """The document a raw record holds, or its quarantine reason."""
        return validate(record, ingest)

    def apply(self, context: Phase1Context) -> Phase1Output:
        raise NotImplementedError

    def shard_counts(self, table: pa.Table) -> dict[str, int]:
        """What the transform counts in one shard of its build (any phase): counts that add up
        across shards, which `statistics` turns into stats.json keys. Nothing by default."""
        return {}

    def statistics(self, counts: Mapping[str, int]) -> dict:
        """The keys the transform adds to one section of stats.json (a phase or the whole build),
        from its `shard_counts` summed over that section's shards."""
        return {}

    def copies(self, settings: Mapping[str, Any]) -> int | None:
        """How many times each phase-1 document it keeps appears (None: the transform repeats nothing)."""
        return None


@dataclass(frozen=True)
class Regime:
    """A named regime: its phase-1 transform and the training overrides that land in the manifest's
    `recipe`; `derived_from` names the regime whose complete build it starts from."""

    name: str
    description: str
    transform: Phase1Transform
    train_overrides: dict = field(default_factory=dict)
    derived_from: str | None = None


REGISTRY: dict[str, Regime] = {}


def register(regime: Regime) -> Regime:
    """Add a regime to the registry (names are upper case, like the CLI's --regime); each regime's
    module registers it."""
    REGISTRY[regime.name.upper()] = regime
    return regime
