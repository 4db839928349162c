"""A tiktoken encoder with exactly the ids of a byte-level BPE `tokenizers.Tokenizer`, 3x faster.

A build tokenizes every shard with its tokenizer. tiktoken runs byte-level BPE several times
faster than `tokenizers` but differs from it: it merges the adjacent pair whose concatenation
has the lowest id (HF: the pair listed first among the merges, and only listed pairs), takes a
pre-token found whole in the vocabulary as that token (HF only with `ignore_merges`), and knows
no normalizers, prefix spaces, dropout or subword affixes. `tiktoken_encoding` builds an encoding
only for a tokenizer where none of this shows, and otherwise says why not:

- the merges' tokens have increasing ids, so both order the listed pairs alike;
- HF's merges turn each token's own bytes into that token. Then no state HF reaches holds two
  adjacent tokens whose concatenation is a token but not their merge: HF's merges inside that
  concatenation's span went as they go on its bytes alone, which end in one token, so the pair
  must merge. tiktoken's candidates are therefore HF's, in the same order (leftmost first on
  ties, both), and a pre-token that is a whole token is that token for both.

Special tokens: HF splits added tokens out of any text, even with add_special_tokens=False, so
the encoding allows all of them in text as well. The pre-tokenizer regex is the same, run by
another engine (Oniguruma in HF, fancy-regex in tiktoken): every code point was checked in three
contexts (docs/benchmarks.md), and the tests check every fifth on each run.
"""

from __future__ import annotations

import json
import random

import tiktoken
from tokenizers import Tokenizer

# The pre-tokenizer regex of `tokenizers`' ByteLevel with use_regex=True (GPT-2's).
BYTE_LEVEL_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
POST_PROCESSORS = (None, "ByteLevel", "TemplateProcessing")  # none adds a token with add_special_tokens=False
# The fields whose meaning is checked; another (from a later `tokenizers`) could change the ids.
KNOWN_FIELDS = {
    "tokenizer": {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder", "model"},
    "pre_tokenizer": {"type", "add_prefix_space", "trim_offsets", "use_regex"},
    "model": {
        "type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", "byte_fallback",
        "ignore_merges", "vocab", "merges",
    },
}  # fmt: skip
PROBES = 2000


def byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character to byte: printable bytes stand for themselves, the
    others for the characters from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {chr(b): b for b in printable} | {chr(256 + i): b for i, b in enumerate(others)}


def tiktoken_encoding(tokenizer: Tokenizer) -> tuple[tiktoken.Encoding | None, str]:
    """An encoding whose `encode_to_numpy(text, allowed_special=its specials, disallowed_special=())`
    equals `tokenizer.encode(text, add_special_tokens=False).ids` for every text, or None and why not."""
    if getattr(tokenizer, "encode_special_tokens", False):
        return None, "encode_special_tokens is set"
    spec = json.loads(tokenizer.to_str())
    reason = _pipeline_difference(spec)
    if reason:
        return None, reason
    specials, reason = _special_tokens(spec)
    if reason:
        return None, reason
    ranks, reason = _mergeable_ranks(spec["model"], specials)
    if reason:
        return None, reason
    merges_only = tokenizer.model  # with ignore_merges, the merges must still make each token (see above)
    if spec["model"].get("ignore_merges"):
        merges_only = Tokenizer.from_str(json.dumps(spec | {"model": spec["model"] | {"ignore_merges": False}})).model
    alphabet = {b: c for c, b in byte_level_decoder().items()}
    for token, rank in ranks.items():
        if len(token) > 1 and [t.id for t in merges_only.tokenize("".join(alphabet[b] for b in token))] != [rank]:
            return None, f"the merges do not make token {rank} from its own bytes"
    encoding = tiktoken.Encoding("curate-byte-level-bpe", pat_str=BYTE_LEVEL_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    # A last check, on texts where merge order matters most, against differences nobody has listed.
    probes = glued_tokens(list(ranks), PROBES)
    for text, expected in zip(probes, tokenizer.encode_batch_fast(probes, add_special_tokens=False)):
        if encoding.encode(text, allowed_special=encoding.special_tokens_set, disallowed_special=()) != expected.ids:
            return None, f"tiktoken gives other ids than tokenizers for {text!r}"
    return encoding, ""


def glued_tokens(tokens: list[bytes], count: int, seed: int = 26) -> list[str]:
    """Up to `count` seeded texts of 2 to 7 vocabulary tokens each: adjacent tokens whose concatenation
    is another token are where tiktoken's merge order (by token id) could part from HF's merge list."""
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(20 * count):
        try:
            texts.append(b"".join(rng.choices(tokens, k=rng.randrange(2, 8))).decode("utf-8"))
        except UnicodeDecodeError:
            continue
        if len(texts) == count:
            break
    return texts


def _pipeline_difference(spec: dict) -> str:
    """What, outside the vocabulary and merges, would make HF's ids differ from tiktoken's ('' if nothing)."""
    model, pre = spec["model"], spec.get("pre_tokenizer") or {}
    if model.get("type") != "BPE":
        return f"the model is {model.get('type')}, not BPE"
    for part, fields in [("tokenizer", spec), ("pre_tokenizer", pre), ("model", model)]:
        unknown = sorted(set(fields) - KNOWN_FIELDS[part])
        if unknown:
            return f"{part} has fields not checked here: {', '.join(unknown)}"
    if spec.get("truncation") or spec.get("padding"):
        return "truncation or padding is set"
    normalizer = spec.get("normalizer")
    if normalizer is not None and normalizer != {"type": "Sequence", "normalizers": []}:
        return f"it has a normalizer ({normalizer.get('type')})"
    if pre.get("type") != "ByteLevel" or pre.get("add_prefix_space") or not pre.get("use_regex", True):
        return "the pre-tokenizer is not ByteLevel(add_prefix_space=False, use_regex=True)"
    if (spec.get("post_processor") or {}).get("type") not in POST_PROCESSORS:
        return f"post-processor {spec['post_processor'].get('type')}"
    if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return "the BPE has dropout or subword affixes"
    if model.get("byte_fallback"):
        return "the BPE has byte_fallback"
    return ""


def _special_tokens(spec: dict) -> tuple[dict[str, int], str]:
    """The added tokens, all of which HF splits out of text as tiktoken does allowed special tokens:
    only plain special ones, none the prefix of another (at one position HF takes the longest,
    tiktoken the first in an unordered alternation)."""
    specials: dict[str, int] = {}
    for added in spec.get("added_tokens", []):
        if not added["special"] or added["lstrip"] or added["rstrip"] or added["single_word"] or not added["content"]:
            return {}, f"added token {added['content']!r} is not a plain special token"
        specials[added["content"]] = added["id"]
    for token in specials:
        if any(other != token and other.startswith(token) for other in specials):
            return {}, f"special token {token!r} is the prefix of another"
    return specials, ""


def _mergeable_ranks(model: dict, specials: dict[str, int]) -> tuple[dict[bytes, int], str]:
    """The vocabulary as bytes to id, if every byte has a token, every other token is made by
    exactly one merge, and the merges' tokens have increasing ids."""
    decoder = byte_level_decoder()
    ranks: dict[bytes, int] = {}
    for token, rank in model["vocab"].items():
        if specials.get(token) == rank:
            continue
        if rank in specials.values():
            return {}, f"id {rank} is both a special token and {token!r}"
        if any(c not in decoder for c in token):
            return {}, f"token {rank} is not in the byte-level alphabet"
        ranks[bytes(decoder[c] for c in token)] = rank
    if any(bytes([b]) not in ranks for b in range(256)):
        return {}, "some bytes have no token"
    merged = []
    for merge in model["merges"]:
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        ids = [model["vocab"].get(left), model["vocab"].get(right), model["vocab"].get(left + right)]
        if None in ids:
            return {}, f"merge {left!r} {right!r} has a token outside the vocabulary"
        if merged and ids[2] <= merged[-1]:
            return {}, f"merge {left!r} {right!r} is out of id order"
        merged.append(ids[2])
    if set(merged) != set(ranks.values()) - {ranks[bytes([b])] for b in range(256)}:
        return {}, "some tokens are neither a byte nor made by a merge"
    return ranks, ""
