"""The VL prompt de-duplication library on hand-written records of every shape: exactly what goes,
what stays, and that images and targets come through byte-identical."""

from __future__ import annotations

import copy
import json

import pytest

from curate.curation.vl import ShapeError, decode_record, encode_record, parse_vl_record
from curate.dedup.prompt_dedup import (
    PromptDedupConfig,
    count_duplicate_segments,
    dedup_record,
    dedup_texts,
    remove_segments,
    segment_text,
)
from vl_samples import FLAT, LLAVA, MESSAGES_PARTS, PNG_DATA_URL, SHAREGPT_STRING

CONFIG = PromptDedupConfig()


def test_llava_record_loses_exactly_the_copies_outside_the_user_turn():
    original = copy.deepcopy(LLAVA)
    out, shape, stats = dedup_record(LLAVA, CONFIG)
    assert shape == "llava"
    assert LLAVA == original, "the input record is not modified in place"
    expected = copy.deepcopy(LLAVA)
    expected["conversations"][0]["value"] = "You are a careful visual assistant."
    expected["caption"] = "A white and red double-decker bus drives down a city street."
    expected["ocr"] = "CITY TOUR 24"
    expected["metadata"]["template"] = "{question}"
    assert out == expected
    assert list(out) == list(LLAVA), "key order is kept"
    assert json.dumps(out["image"]) == json.dumps(LLAVA["image"])
    assert [t["value"] for t in out["conversations"] if t["from"] == "gpt"] == [
        "White and red. Look at the image and answer the question.",
        "Advertisement",
    ], "the target turns keep the instruction they happen to contain"
    assert stats.prompt.segments == 16 and stats.prompt.duplicate_segments == 6
    assert stats.duplicate_segments_after == 0 and stats.segments_after == 10
    assert stats.fields["user"].duplicate_segments == 0 and stats.fields["user"].segments == 5
    assert stats.fields["system"].duplicate_segments == 2
    assert stats.fields["metadata"].segments == 4 and stats.fields["metadata"].duplicate_segments == 2
    assert "assistant" not in stats.fields
    removed = 2 * len("Look at the image and answer the question".split()) + 2 * len(
        "Answer with a single word or phrase".split()
    ) + len("Look at the image and answer the question".split()) + len("Answer with a single word or phrase".split())
    assert stats.prompt.removed_tokens == removed
    assert stats.changed


def test_emptied_field_keeps_its_slot_and_image_parts_are_identical():
    out, shape, stats = dedup_record(MESSAGES_PARTS, CONFIG)
    assert shape == "messages"
    assert out["messages"][0] == {"role": "system", "content": ""}
    assert out["messages"][1] == MESSAGES_PARTS["messages"][1]
    assert out["messages"][1]["content"][0]["image_url"]["url"] == PNG_DATA_URL
    assert out["messages"][2] == MESSAGES_PARTS["messages"][2]
    assert out["caption"] == "Bar chart of quarterly revenue for 2023."
    assert stats.prompt.duplicate_segments == 2 and stats.fields["system"].segments == 1


def test_precedence_decides_which_field_keeps_the_canonical_copy():
    config = PromptDedupConfig(precedence=("system", "user", "caption"))
    out, _, _ = dedup_record(MESSAGES_PARTS, config)
    assert out["messages"][0]["content"] == "Read the chart carefully and answer in one sentence."
    assert out["messages"][1]["content"][1] == {"type": "text", "text": "Which quarter had the highest revenue?"}
    assert out["messages"][1]["content"][0] == MESSAGES_PARTS["messages"][1]["content"][0]
    assert out["caption"] == "Bar chart of quarterly revenue for 2023."


def test_sharegpt_string_content_and_metadata_string_with_a_label():
    out, shape, stats = dedup_record(SHAREGPT_STRING, CONFIG)
    assert shape == "messages"
    # The metadata line is "prompt: <instruction>": not the same sentence, so it stays.
    assert out == SHAREGPT_STRING
    assert not stats.changed
    labelled = dict(SHAREGPT_STRING, metadata="prompt:\nDescribe this image in detail, including the objects and their layout.")
    out, _, stats = dedup_record(labelled, CONFIG)
    assert out["metadata"] == "prompt:"
    assert out["messages"] == SHAREGPT_STRING["messages"]
    assert out["images"] == ["sa_1234.jpg"] and out["ocr"] == ""


def test_flat_record_with_named_fields_leaves_the_target_alone():
    out, shape, stats = dedup_record(FLAT, CONFIG)
    assert shape == "flat"
    assert out == dict(
        FLAT,
        system="You answer questions about scanned documents.",
        ocr="INVOICE 2231\nTotal due: $1,204.50",
    )
    assert out["answer"] == FLAT["answer"] and out["image"] == FLAT["image"]
    assert stats.fields["user"].duplicate_segments == 0
    assert stats.fields["system"].duplicate_segments == 1 and stats.fields["ocr"].duplicate_segments == 1


def test_flat_record_fields_are_configurable():
    record = {"prompt": "Count the apples in the basket and reply with a number.", "alt_text":
              "A basket of apples. Count the apples in the basket and reply with a number.", "label": "7"}
    out, _, _ = dedup_record(record, CONFIG, fields=("prompt", "alt_text"))
    assert out == dict(record, alt_text="A basket of apples.")
    unlisted, _, _ = dedup_record(dict(record, user="hi"), CONFIG)
    assert unlisted == dict(record, user="hi"), "fields that are not listed are not prompt text"


@pytest.mark.parametrize(
    "record",
    [
        {"image": "a.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A cat."}],
         "caption": "What is this? A cat on a mat."},
        {"messages": [{"role": "system", "content": "Yes."}, {"role": "user", "content": "Yes. Is the cat black?"},
                      {"role": "assistant", "content": "Yes."}]},
        {"system": "You are a helpful assistant.", "user": "Describe the scene in the photo.",
         "caption": "Two children fly a kite on a windy beach.", "ocr": "", "answer": "Describe the scene in the photo."},
        {"user": "Describe the image in detail.\nDescribe the image in detail.", "caption": "A red barn in a snowy field."},
    ],
    ids=["short-phrase", "short-answer", "only-target-repeats", "repeat-within-one-field"],
)
def test_records_without_cross_field_duplicates_are_untouched(record):
    original = copy.deepcopy(record)
    out, _, stats = dedup_record(record, CONFIG)
    assert out == original
    assert not stats.changed and stats.prompt.duplicate_segments == 0 and stats.prompt.removed_tokens == 0


def test_normalisation_matches_case_whitespace_and_edge_punctuation():
    record = {"user": "<image>\nDescribe the image in detail.", "caption": "describe   the IMAGE in detail\nA lighthouse at dusk."}
    out, _, _ = dedup_record(record, CONFIG)
    assert out == {"user": record["user"], "caption": "A lighthouse at dusk."}


def test_chinese_instruction_is_long_enough_and_removed_from_the_system_turn():
    record = {"messages": [
        {"role": "system", "content": "你是一个视觉助手。请仔细观察图片并回答问题。"},
        {"role": "user", "content": "<image>\n请仔细观察图片并回答问题。图中有几只猫？"},
        {"role": "assistant", "content": "两只。"}]}
    out, _, stats = dedup_record(record, CONFIG)
    assert out["messages"][0]["content"] == "你是一个视觉助手。"
    assert out["messages"][1:] == record["messages"][1:]
    assert stats.prompt.duplicate_segments == 1


def test_output_has_no_duplicates_left_and_a_second_pass_changes_nothing():
    for record in (LLAVA, MESSAGES_PARTS, FLAT):
        once, _, _ = dedup_record(record, CONFIG)
        twice, _, stats = dedup_record(once, CONFIG)
        assert twice == once and stats.prompt.duplicate_segments == 0


def test_segments_keep_placeholders_and_removal_keeps_paragraphs():
    text = "<image>\nFirst point here.\n\nSecond point. Third point.\n\nFourth point."
    segments = segment_text(text)
    assert [text[s.start : s.end] for s in segments] == [
        "<image>", "First point here.", "Second point.", "Third point.", "Fourth point."]
    assert segments[0].placeholder and not segments[1].placeholder
    assert remove_segments(text, segments, [False, False, False, True, False]) == (
        "<image>\nFirst point here.\n\nSecond point.\n\nFourth point.")
    assert remove_segments(text, segments, [False, False, True, False, False]) == (
        "<image>\nFirst point here.\n\nThird point.\n\nFourth point.")
    assert remove_segments(text, segments, [False, False, False, True, True]) == (
        "<image>\nFirst point here.\n\nSecond point.")
    assert remove_segments(text, segments, [False] * 5) == text
    inline = "<image> Describe the image in detail."
    out, _ = dedup_texts([("user", "Describe the image in detail."), ("caption", inline)], CONFIG)
    assert out == ["Describe the image in detail.", "<image>"]


def test_count_duplicate_segments_counts_removable_copies():
    fields = [("user", "Answer with a single word or phrase."), ("system", "Answer with a single word or phrase."),
              ("ocr", "Answer with a single word or phrase."), ("caption", "A small boat.")]
    assert count_duplicate_segments(fields, CONFIG) == 2


@pytest.mark.parametrize(
    "record, reason",
    [
        ({"text": "plain pretraining text"}, "unknown_shape"),
        ({"conversations": [], "image": "a.jpg"}, "bad_conversations"),
        ({"conversations": [{"from": "human"}]}, "bad_turn"),
        ({"conversations": [{"from": "narrator", "value": "x"}]}, "unknown_role"),
        ({"conversations": [{"from": "human", "value": 3}]}, "bad_turn"),
        ({"conversations": [{"from": "human", "value": "x"}], "messages": []}, "ambiguous_shape"),
        ({"messages": "hello"}, "bad_messages"),
        ({"messages": [{"role": "user", "content": 7}]}, "bad_content"),
        ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "bad_content"),
        ({"messages": [{"role": "assistant", "content": "only a target"}]}, "no_prompt_text"),
    ],
)
def test_records_of_no_known_shape_get_a_reason(record, reason):
    with pytest.raises(ShapeError) as raised:
        parse_vl_record(record)
    assert raised.value.reason == reason


def test_record_codec_round_trips_bytes_and_reserved_keys():
    record = {
        "image": {"bytes": b"\x89PNG\r\n\x1a\n\x00\xff", "path": "x.png"},
        "$vl_blob": 3,
        "$vlnote": {"$vl_blob": 0},
        "user": "What is shown?",
        "score": 0.1,
        "tags": [None, True, 12345678901234567890],
    }
    text, blobs = encode_record(record)
    assert blobs == [b"\x89PNG\r\n\x1a\n\x00\xff"]
    back = decode_record(text, blobs)
    assert back == record and list(back) == list(record)
    for bad, reason in (
        ({"user": "x", "score": float("nan")}, "unsupported_value_type"),
        ({"user": "x", "pair": (1, 2)}, "unsupported_value_type"),
        (json.loads('{"user": "lone \\ud800 surrogate"}'), "invalid_utf8"),
    ):
        with pytest.raises(ShapeError) as raised:
            encode_record(bad)
        assert raised.value.reason == reason
