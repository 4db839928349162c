"""Natural-language detection by Unicode script statistics.

Enough to choose the teacher's prompt variant and to slice statistics by language:
Han characters without kana mean Chinese, kana mean Japanese, Hangul Korean,
Cyrillic Russian-family, Latin letters English-family ("en"). No model, no download.
"""

from __future__ import annotations

import unicodedata

_SAMPLE_CHARS = 4000


def _script(char: str) -> str | None:
    code = ord(char)
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF:
        return "han"
    if 0x3040 <= code <= 0x30FF:
        return "kana"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF:
        return "hangul"
    if 0x0400 <= code <= 0x04FF:
        return "cyrillic"
    if char.isascii() and char.isalpha():
        return "latin"
    if unicodedata.category(char).startswith("L"):
        return "other"
    return None


def detect_language(text: str) -> str:
    """One of "zh", "ja", "ko", "ru", "en", "other" or "unknown" (no letters at all).

    Chinese wins when Han characters make up at least a fifth of the letters, since a
    Chinese document usually carries Latin identifiers, numbers and markup too.
    """
    counts: dict[str, int] = {}
    for char in text[:_SAMPLE_CHARS]:
        script = _script(char)
        if script is not None:
            counts[script] = counts.get(script, 0) + 1
    letters = sum(counts.values())
    if letters == 0:
        return "unknown"
    if counts.get("kana", 0) >= 0.05 * letters:
        return "ja"
    if counts.get("hangul", 0) >= 0.2 * letters:
        return "ko"
    if counts.get("han", 0) >= 0.2 * letters:
        return "zh"
    if counts.get("cyrillic", 0) >= 0.5 * letters:
        return "ru"
    if counts.get("latin", 0) >= 0.5 * letters:
        return "en"
    return "other"
