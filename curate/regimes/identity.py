"""Regimes A and B: phase 1 as it is.

A writes P's first half straight from the seeded order; B reads A's phase-1 shards and writes
them again, which gives A's bytes (shards depend on their rows only), so B differs from A only
in its training recipe.
"""

from __future__ import annotations

from curate.regimes.base import Phase1Context, Phase1Output, Phase1Transform


class Identity(Phase1Transform):
    name = "identity"

    def apply(self, context: Phase1Context) -> Phase1Output:
        return Phase1Output(context.write(context.phase1()))
