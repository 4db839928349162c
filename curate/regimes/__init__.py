"""The regime registry: which phase-1 transform each regime gets and how it trains (DESIGN.md).

A regime is a transform of phase 1 (one module of this package each, with its settings, the
columns it adds and what it measures) plus the training overrides that land in `manifest.json`
under `recipe`, so the trainer applies them without the user repeating them. B, C and D derive
from a complete A build (`derived_from`). Adding a regime is one module that ends in its
`register(Regime(...))` call, imported below: `curate build` and `curate experiment` make options of
its settings.
"""

from __future__ import annotations

from curate.curation.errors import UserError
from curate.regimes.base import REGISTRY, Regime, register  # noqa: F401  (the registry, for callers)

# Each module registers its regimes on import; this order is the registry's, whose first is the default.
# isort: off
from curate.regimes import identity  # noqa: F401
from curate.regimes import repetition  # noqa: F401
from curate.regimes import teacher_rewrite  # noqa: F401
from curate.regimes import vl_prompt_dedup  # noqa: F401
# isort: on


def default_regime() -> str:
    """The regime `curate build` makes unless told otherwise: the first registered."""
    return next(iter(REGISTRY))


def get_regime(name: str) -> Regime:
    """The regime called `name` (case-insensitive); unknown names list the valid ones."""
    regime = REGISTRY.get(name.upper())
    if regime is None:
        raise UserError(f"unknown regime {name!r}; valid regimes: {', '.join(REGISTRY)}")
    return regime


def regime_columns(base: str) -> tuple[str, ...]:
    """The shard columns the transforms of `base`'s family add: input metadata of these names is
    renamed at ingest, so a build derived from `base` can add its columns."""
    return tuple(sorted({column for regime in family(base) for column in regime.transform.columns}))


def family(base: str) -> list[Regime]:
    """A regime built from its input and, in registry order, every regime derived from it."""
    root = get_regime(base)
    return [root] + [regime for regime in REGISTRY.values() if regime.derived_from == root.name]


def default_study() -> list[Regime]:
    """The regimes `curate experiment` compares unless told otherwise: the first registered regime
    that others derive from, and its family."""
    base = next(r for r in REGISTRY.values() if r.derived_from is None and any(d.derived_from == r.name for d in REGISTRY.values()))
    return family(base.name)


def recipe_record(regime: Regime, settings: dict) -> dict:
    """The `recipe` entry of a manifest: what phase 1 got, with which settings, and how to train."""
    return {
        "name": regime.name,
        "description": regime.description,
        "phase1_transform": regime.transform.name,
        "settings": settings,
        "train_overrides": dict(regime.train_overrides),
    }
