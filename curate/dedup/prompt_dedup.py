"""Multi-field prompt de-duplication for one vision-language record (the paper's section 6).

A VL sample often repeats its instruction in several fields: the system message, the user turn,
the caption, the metadata's template, the OCR text. The de-duplication here:

1. cuts every prompt field into segments: lines, and sentences within lines; image placeholders
   such as `<image>` are segments of their own that are never removed;
2. normalises each segment (NFKC, case, whitespace, surrounding punctuation) to a key;
3. calls a key *duplicated* when it is long enough to be an instruction (`min_tokens` tokens and
   `min_width` display columns, so "What is this?" is not one) and occurs in more than one field;
4. keeps the copies in the field of highest precedence (default: the user turn; fields not in the
   precedence list come after those in it, in record order) and removes the copies in every other
   field, with the whitespace that separated them. A field emptied by this becomes "" and keeps
   its slot. Repeats inside one field (say, every user turn of a multi-turn conversation) are not
   across fields and stay.

The assistant/target turns take no part: they are never segmented, compared or changed.

Statistics count segments and tokens of prompt fields only. A record's duplication rate is the
share of its prompt segments that are removable copies; measuring the output again gives the rate
after. Tokens are counted simply: a run of non-space characters is a token, and so is every CJK
character.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Sequence

from curate.curation.vl import (
    DEFAULT_FIELDS,
    TextSlot,
    get_text,
    parse_vl_record,
    replace_texts,
)

DEFAULT_PRECEDENCE = ("user", "system", "caption", "metadata", "ocr")

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_WIDE = re.compile(rf"[{_CJK}\u3000-\u303f\uff01-\uff60\uffe0-\uffe6]")
_PLACEHOLDER = re.compile(r"<image(?:_\d+)?>|<\|image(?:_pad)?\|>|<img>")
_SENTENCE = re.compile(r"\S.*?(?:[.!?…]+[\"'”’)\]]*(?=\s|$)|[。！？]+[”」』]*|$)")
_EDGE_PUNCTUATION = string.punctuation + string.whitespace + "。！？，、；：“”‘’「」『』（）…"


@dataclass(frozen=True)
class PromptDedupConfig:
    """Which field keeps the canonical copy (first listed wins) and how long an instruction is."""

    precedence: tuple[str, ...] = DEFAULT_PRECEDENCE
    min_tokens: int = 3
    min_width: int = 15


@dataclass(frozen=True)
class Segment:
    """A sentence or line of a field: its span in the field's text and its comparison key."""

    start: int
    end: int
    key: str
    tokens: int
    placeholder: bool


def count_tokens(text: str) -> int:
    """Whitespace-separated tokens, with every CJK character a token of its own."""
    return len(_TOKEN.findall(text))


def normalize_segment(text: str) -> str:
    """The comparison key: NFKC, case-folded, whitespace collapsed, edge punctuation stripped."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.split()).strip(_EDGE_PUNCTUATION)


def display_width(text: str) -> int:
    """Terminal columns: CJK and full-width characters take two."""
    return len(text) + len(_WIDE.findall(text))


def _sentences(text: str, offset: int) -> list[Segment]:
    segments = []
    for match in _SENTENCE.finditer(text):
        piece = match.group().rstrip()
        if piece:
            start = offset + match.start()
            segments.append(Segment(start, start + len(piece), normalize_segment(piece), count_tokens(piece), False))
    return segments


def segment_text(text: str) -> list[Segment]:
    """Segments of a field in order; only whitespace lies between and around them."""
    segments: list[Segment] = []
    line_start = 0
    for line in text.split("\n"):
        position = line_start
        for match in _PLACEHOLDER.finditer(line):
            segments.extend(_sentences(line[position - line_start : match.start()], position))
            start = line_start + match.start()
            segments.append(Segment(start, line_start + match.end(), "", 0, True))
            position = line_start + match.end()
        segments.extend(_sentences(line[position - line_start :], position))
        line_start += len(line) + 1
    return segments


def is_instruction_long(segment: Segment, config: PromptDedupConfig) -> bool:
    """Long enough to be an instruction rather than a common short phrase."""
    return (
        not segment.placeholder
        and segment.tokens >= config.min_tokens
        and display_width(segment.key) >= config.min_width
    )


def _field_rank(name: str, first_seen: int, config: PromptDedupConfig) -> tuple[int, int]:
    listed = config.precedence.index(name) if name in config.precedence else len(config.precedence)
    return (listed, first_seen)


def _plan(names: Sequence[str], segmented: Sequence[list[Segment]], config: PromptDedupConfig) -> list[list[bool]]:
    """Which segments are copies to remove, given each text's field name and segments."""
    fields_of_key: dict[str, dict[str, int]] = {}
    first_seen: dict[str, int] = {}
    long_enough: dict[str, bool] = {}
    for index, (name, segments) in enumerate(zip(names, segmented)):
        first_seen.setdefault(name, index)
        for segment in segments:
            if segment.key not in long_enough:
                long_enough[segment.key] = is_instruction_long(segment, config)
            if long_enough[segment.key]:
                fields_of_key.setdefault(segment.key, {}).setdefault(name, index)
    canonical = {
        key: min(holders, key=lambda name: _field_rank(name, first_seen[name], config))
        for key, holders in fields_of_key.items()
        if len(holders) > 1
    }
    return [
        [segment.key in canonical and canonical[segment.key] != name for segment in segments]
        for name, segments in zip(names, segmented)
    ]


def find_removals(fields: Sequence[tuple[str, str]], config: PromptDedupConfig) -> list[list[bool]]:
    """For each (field name, text), which of its segments are copies to remove.

    Several texts may share a field name (all user turns are the field "user").
    """
    return _plan([name for name, _ in fields], [segment_text(text) for _, text in fields], config)


def remove_segments(text: str, segments: Sequence[Segment], remove: Sequence[bool]) -> str:
    """`text` without the removed segments; between two kept segments goes the strongest separator
    (most newlines) of those that lay between them, so paragraphs stay paragraphs."""
    if not any(remove):
        return text
    kept = [segment for segment, drop in zip(segments, remove) if not drop]
    if not kept:
        return ""
    pieces = [text[: segments[0].start]]
    previous_end = None
    separators: list[str] = []
    for segment, drop in zip(segments, remove):
        if previous_end is not None:
            separators.append(text[previous_end : segment.start])
        previous_end = segment.end
        if drop:
            continue
        if len(pieces) > 1:
            pieces.append(max(separators, key=lambda sep: (sep.count("\n"), len(sep))))
        pieces.append(text[segment.start : segment.end])
        separators = []
    pieces.append(text[segments[-1].end :])
    return "".join(pieces)


@dataclass
class FieldStats:
    """Segment and token counts of prompt text: one field of a record, or sums over many."""

    segments: int = 0
    duplicate_segments: int = 0
    tokens: int = 0
    removed_tokens: int = 0

    def add(self, other: "FieldStats") -> None:
        for name in ("segments", "duplicate_segments", "tokens", "removed_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class RecordStats:
    """One record's statistics: `prompt` sums its fields; the `*_after` counts are measured on the output."""

    prompt: FieldStats
    fields: dict[str, FieldStats]
    segments_after: int
    duplicate_segments_after: int

    @property
    def changed(self) -> bool:
        return self.prompt.duplicate_segments > 0


def count_duplicate_segments(fields: Sequence[tuple[str, str]], config: PromptDedupConfig) -> int:
    """How many segments of these texts are removable copies (0 after de-duplication)."""
    return sum(sum(flags) for flags in find_removals(fields, config))


def dedup_texts(fields: Sequence[tuple[str, str]], config: PromptDedupConfig) -> tuple[list[str], RecordStats]:
    """De-duplicate the prompt texts of one record; returns the new texts (same order) and stats."""
    names = [name for name, _ in fields]
    segmented = [segment_text(text) for _, text in fields]
    removals = _plan(names, segmented, config)
    per_field: dict[str, FieldStats] = {}
    new_texts = []
    segmented_after = []
    for name, (_, text), segments, remove in zip(names, fields, segmented, removals):
        field_stats = per_field.setdefault(name, FieldStats())
        for segment, drop in zip(segments, remove):
            if segment.placeholder:
                continue
            field_stats.segments += 1
            field_stats.tokens += segment.tokens
            if drop:
                field_stats.duplicate_segments += 1
                field_stats.removed_tokens += segment.tokens
        new_text = remove_segments(text, segments, remove)
        new_texts.append(new_text)
        segmented_after.append(segment_text(new_text) if new_text != text else segments)
    prompt = FieldStats()
    for field_stats in per_field.values():
        prompt.add(field_stats)
    return new_texts, RecordStats(
        prompt=prompt,
        fields=per_field,
        segments_after=sum(not s.placeholder for segments in segmented_after for s in segments),
        duplicate_segments_after=sum(sum(flags) for flags in _plan(names, segmented_after, config)),
    )


def dedup_record(
    record: dict, config: PromptDedupConfig, fields: tuple[str, ...] = DEFAULT_FIELDS
) -> tuple[dict, str, RecordStats]:
    """De-duplicate one VL record: (new record, shape, stats). Raises ShapeError for unknown shapes."""
    shape, slots = parse_vl_record(record, fields)
    prompt_slots: list[TextSlot] = [slot for slot in slots if not slot.protected]
    texts = [(slot.field, get_text(record, slot.path)) for slot in prompt_slots]
    new_texts, stats = dedup_texts(texts, config)
    replacements = {
        slot.path: new for slot, (_, old), new in zip(prompt_slots, texts, new_texts) if new != old
    }
    return replace_texts(record, replacements), shape, stats
