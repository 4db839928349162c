"""Natural-language detection by Unicode script statistics.

Enough to choose the teacher's prompt variant and to slice statistics by language:
Han characters without kana mean Chinese, kana mean Japanese, Hangul Korean,
Cyrillic Russian-family, Latin letters English-family ("en"). No model, no download.
"""

from __future__ import annotations

import numpy as np

_SAMPLE_CHARS = 4000
# Inclusive code point ranges per script (disjoint); every character in them counts, letter or not.
_SCRIPT_RANGES = {
    "han": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF)),
    "kana": ((0x3040, 0x30FF),),
    "hangul": ((0xAC00, 0xD7AF), (0x1100, 0x11FF)),
    "cyrillic": ((0x0400, 0x04FF),),
}


def script_counts(text: str) -> dict[str, int]:
    """Characters per script in the sample: the ranges above, ASCII letters as "latin", and any other
    letter (Unicode category L*, which is what `str.isalpha` tests) as "other"."""
    codes = np.frombuffer(text[:_SAMPLE_CHARS].encode("utf-32-le", "surrogatepass"), dtype="<u4")
    counts = {}
    outside = codes >= 128
    for script, ranges in _SCRIPT_RANGES.items():
        inside = np.zeros(len(codes), dtype=bool)
        for low, high in ranges:
            inside |= (codes >= low) & (codes <= high)
        counts[script] = int(inside.sum())
        outside &= ~inside
    folded = codes | 0x20
    counts["latin"] = int(((folded >= ord("a")) & (folded <= ord("z"))).sum())
    counts["other"] = sum(map(str.isalpha, codes[outside].tobytes().decode("utf-32-le", "surrogatepass")))
    return counts


def detect_language(text: str) -> str:
    """One of "zh", "ja", "ko", "ru", "en", "other" or "unknown" (no letters at all).

    Chinese wins when Han characters make up at least a fifth of the letters, since a
    Chinese document usually carries Latin identifiers, numbers and markup too.
    """
    counts = script_counts(text)
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
