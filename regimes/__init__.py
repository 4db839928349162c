"""The regime registry: one recipe per regime of the paper (DESIGN.md gives the semantics).

A recipe names the transform its phase 1 gets and the training overrides that land in
`manifest.json` under `recipe`, so the trainer applies them without the user repeating them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from curation.errors import UserError


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    phase1_transform: str
    train_overrides: dict = field(default_factory=dict)
    text: bool = True


REGISTRY: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            "A",
            "coverage-expanding baseline: exact and MinHash near dedup, seeded order, two phases",
            "identity",
            {"lr_decay_style": "cosine"},
        ),
        Recipe(
            "B",
            "optimization control: A's data byte for byte, constant learning rate after warmup",
            "identity",
            {"lr_decay_style": "constant"},
        ),
        Recipe(
            "C",
            "repetition-concentrated: a seeded 10% of A's phase 1, each repeated 10 times",
            "repeat",
            {"lr_decay_style": "cosine"},
        ),
        Recipe(
            "D",
            "frequency-concentrated: every phase-1 document rewritten by the teacher LLM",
            "teacher",
            {"lr_decay_style": "cosine"},
        ),
        Recipe(
            "VL",
            "vision-language: prompt segments repeated across fields reduced to one instance",
            "prompt-dedup",
            {"lr_decay_style": "cosine"},
            text=False,
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    """The recipe of a regime, by case-insensitive name; unknown names list the valid ones."""
    recipe = REGISTRY.get(name.upper())
    if recipe is None:
        raise UserError(f"unknown regime {name!r}; valid regimes: {', '.join(REGISTRY)}")
    return recipe


def recipe_record(recipe: Recipe, settings: dict[str, Any]) -> dict:
    """The `recipe` entry of a manifest: what phase 1 got, with which settings, and how to train."""
    return {
        "name": recipe.name,
        "description": recipe.description,
        "phase1_transform": recipe.phase1_transform,
        "settings": settings,
        "train_overrides": dict(recipe.train_overrides),
    }
