"""Regimes A and B: phase 1 as it is.

A writes P's first half straight from the seeded order; B reads A's phase-1 shards and writes
them again, which gives A's bytes (shards depend on their rows only), so B differs from A only
in its training recipe.
"""

from __future__ import annotations

from curate.regimes.base import (
    Phase1Context,
    Phase1Output,
    Phase1Transform,
    Regime,
    register,
)


class Identity(Phase1Transform):
    name = "identity"

    def apply(self, context: Phase1Context) -> Phase1Output:
        return Phase1Output(context.write(context.phase1()))


register(
    Regime(
        "A",
        "coverage-expanding baseline: exact and MinHash near dedup, seeded order, two phases",
        Identity(),
        {"lr_decay_style": "cosine"},
    )
)
register(
    Regime(
        "B",
        "optimization control: A's data byte for byte, constant learning rate after warmup",
        Identity(),
        {"lr_decay_style": "constant"},
        derived_from="A",
    )
)
