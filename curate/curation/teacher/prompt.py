"""The appendix A.1 rewriting prompt, English or Chinese by the document's language.

Both variants are package data (`curation/prompts/teacher-{en,zh}.txt`), verbatim; the
document replaces the `{text}` placeholder as is (no `str.format`, so braces in code stay).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from curate.curation.errors import UserError

PROMPT_LANGUAGES = ("en", "zh")
PLACEHOLDER = "{text}"


@cache
def prompt_template(lang: str) -> str:
    """The verbatim prompt of variant `lang` ("en" or "zh"), with its `{text}` placeholder."""
    if lang not in PROMPT_LANGUAGES:
        raise UserError(f"--lang must be one of {', '.join(PROMPT_LANGUAGES)}, got {lang!r}")
    return resources.files("curate.curation").joinpath(f"prompts/teacher-{lang}.txt").read_text(encoding="utf-8")


def prompt_variant(language: str) -> str:
    """The prompt variant for a detected language: Chinese documents get the Chinese one."""
    return "zh" if language == "zh" else "en"


def build_prompt(text: str, language: str) -> str:
    """The teacher's whole user message for one document of the given detected language."""
    return prompt_template(prompt_variant(language)).replace(PLACEHOLDER, text, 1)
