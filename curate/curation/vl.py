"""Vision-language record shapes: which strings of a record are prompt text, and which are not.

VL data comes in three shapes, recognised by their keys:

- `llava`: `conversations: [{from, value}]` (`human`/`gpt`/`system` turns, an `<image>` placeholder),
  usually with `image` (a path, URL or list of them);
- `messages`: OpenAI/ShareGPT `messages: [{role, content}]`, content a string or a list of typed
  parts (`{"type": "text", "text": ...}` plus image parts, which are never text);
- `flat`: no conversation at all, only named text fields (`system`, `user`, `caption`, ...).

A record is never rebuilt from a model of it: the de-duplication finds its text slots (paths to
strings inside the record), and `replace_texts` copies the record and swaps the changed strings
in, so everything else (images, ids, targets, key order) passes through untouched. Top-level keys
named in `fields` are prompt fields in every shape (e.g. a `caption` beside `conversations`);
their value may be a string or nested lists/dicts of strings (`metadata: {"template": ...}`).

Records go to Arrow as JSON (`encode_record`); `bytes` values (inline images from Parquet) travel
beside it as blobs, so a record read back equals the record written, bytes included.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterator

DEFAULT_FIELDS = ("system", "user", "caption", "metadata", "ocr")

LLAVA_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
}
MESSAGE_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
# Roles whose text is the supervision target or a tool's output: never read as prompt, never changed.
PROTECTED_ROLES = frozenset({"assistant", "tool"})

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class TextSlot:
    """One string inside a record: `field` names it for precedence and statistics."""

    field: str
    path: Path
    protected: bool


class ShapeError(ValueError):
    """A record that parses as no known VL shape; `reason` is the quarantine reason code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def detect_shape(record: dict, fields: tuple[str, ...] = DEFAULT_FIELDS) -> str:
    """`llava`, `messages` or `flat`; raises ShapeError with a reason code for anything else."""
    has_conversations = "conversations" in record
    has_messages = "messages" in record
    if has_conversations and has_messages:
        raise ShapeError("ambiguous_shape")
    if has_conversations:
        return "llava"
    if has_messages:
        return "messages"
    if any(name in record for name in fields):
        return "flat"
    raise ShapeError("unknown_shape")


def _string_leaves(value: Any, path: Path) -> Iterator[Path]:
    """Paths of every string inside nested lists and dicts (numbers, nulls, bytes are not text)."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _string_leaves(item, path + (index,))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _string_leaves(item, path + (key,))


def _llava_slots(record: dict) -> Iterator[TextSlot]:
    turns = record["conversations"]
    if not isinstance(turns, list) or not turns:
        raise ShapeError("bad_conversations")
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise ShapeError("bad_turn")
        role = LLAVA_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise ShapeError("unknown_role")
        if not isinstance(turn["value"], str):
            raise ShapeError("bad_turn")
        yield TextSlot(role, ("conversations", index, "value"), role in PROTECTED_ROLES)


def _message_slots(record: dict) -> Iterator[TextSlot]:
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        raise ShapeError("bad_messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise ShapeError("bad_messages")
        role = MESSAGE_ROLES.get(str(message["role"]).lower())
        if role is None:
            raise ShapeError("unknown_role")
        protected = role in PROTECTED_ROLES
        content = message.get("content")
        if content is None:
            continue
        if isinstance(content, str):
            yield TextSlot(role, ("messages", index, "content"), protected)
            continue
        if not isinstance(content, list):
            raise ShapeError("bad_content")
        for part_index, part in enumerate(content):
            if not isinstance(part, dict) or "type" not in part:
                raise ShapeError("bad_content")
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise ShapeError("bad_content")
                yield TextSlot(role, ("messages", index, "content", part_index, "text"), protected)


def text_slots(record: dict, shape: str, fields: tuple[str, ...] = DEFAULT_FIELDS) -> list[TextSlot]:
    """Every text slot of a record in record order: conversation turns first, then named fields."""
    slots: list[TextSlot] = []
    if shape == "llava":
        slots.extend(_llava_slots(record))
    elif shape == "messages":
        slots.extend(_message_slots(record))
    for name in record:
        if name in fields:
            slots.extend(TextSlot(name, path, False) for path in _string_leaves(record[name], (name,)))
    return slots


def parse_vl_record(record: dict, fields: tuple[str, ...] = DEFAULT_FIELDS) -> tuple[str, list[TextSlot]]:
    """Shape and text slots of a record; raises ShapeError when there is no prompt text at all."""
    shape = detect_shape(record, fields)
    slots = text_slots(record, shape, fields)
    if not any(not slot.protected for slot in slots):
        raise ShapeError("no_prompt_text")
    return shape, slots


def get_text(record: dict, path: Path) -> str:
    value: Any = record
    for key in path:
        value = value[key]
    return value


def replace_texts(record: dict, replacements: dict[Path, str]) -> dict:
    """A copy of `record` with the strings at the given paths replaced; untouched branches are shared."""

    def rebuild(value: Any, path: Path, pending: dict[Path, str]) -> Any:
        if path in pending:
            return pending[path]
        depth = len(path)
        below = {p: text for p, text in pending.items() if p[:depth] == path}
        if not below:
            return value
        children = {p[depth] for p in below}
        if isinstance(value, list):
            return [rebuild(item, path + (i,), below) if i in children else item for i, item in enumerate(value)]
        return {key: rebuild(item, path + (key,), below) if key in children else item for key, item in value.items()}

    return rebuild(record, (), replacements) if replacements else record


BLOB_KEY = "$vl_blob"
ESCAPE = "$vl"


def encode_record(record: dict) -> tuple[str, list[bytes]]:
    """JSON text (key order kept) plus the record's `bytes` values, which JSON cannot hold.

    A bytes value becomes `{"$vl_blob": i}`; a real key starting with `$vl` is escaped by one more
    `$vl` prefix, so no record can be mistaken for a blob reference. Values JSON or Arrow cannot
    hold (NaN, tuples, dates, lone surrogates) raise ShapeError with a reason code.
    """
    blobs: list[bytes] = []

    def encode(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray)):
            blobs.append(bytes(value))
            return {BLOB_KEY: len(blobs) - 1}
        if isinstance(value, dict):
            return {(ESCAPE + key if key.startswith(ESCAPE) else key): encode(item) for key, item in value.items()}
        if isinstance(value, list):
            return [encode(item) for item in value]
        if value is None or isinstance(value, (str, int, bool)):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        raise ShapeError("unsupported_value_type")

    text = json.dumps(encode(record), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ShapeError("invalid_utf8") from None
    return text, blobs


def decode_record(text: str, blobs: list[bytes]) -> dict:
    """The inverse of `encode_record`."""

    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1 and BLOB_KEY in value:
                return blobs[value[BLOB_KEY]]
            return {(key[len(ESCAPE) :] if key.startswith(ESCAPE) else key): decode(item) for key, item in value.items()}
        if isinstance(value, list):
            return [decode(item) for item in value]
        return value

    return decode(json.loads(text))


def render_text(record: dict, slots: list[TextSlot]) -> str:
    """All text of a record (prompt and target) in record order, one slot per line: the `text` column."""
    return "\n".join(get_text(record, slot.path) for slot in slots)


def read_vl_records(out: str) -> list[dict]:
    """The records of a complete VL build, in shard order, exactly as they were written."""
    from curate.curation.manifest import load_manifest
    from curate.curation.shards import read_shard

    records = []
    for phase in load_manifest(out)["phases"]:
        for shard in phase["shards"]:
            table = read_shard(out, shard["path"])
            for text, blobs in zip(table["record"].to_pylist(), table["blobs"].to_pylist()):
                records.append(decode_record(text, blobs))
    return records
