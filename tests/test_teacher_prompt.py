"""The teacher's prompt, output parsing and settings: no engine, no Ray."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest

from curate.curation.errors import UserError
from curate.curation.teacher.config import PAPER_TEACHER_MODEL, TeacherConfig
from curate.curation.teacher.parse import STRUCTURED_OUTPUT_REGEX, parse_rewrite
from curate.curation.teacher.prompt import build_prompt, prompt_template, prompt_variant

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference")
PAPER = os.path.join(REFERENCE, "benchmark-shadows-paper.txt")
ROOT = os.path.join(os.path.dirname(__file__), "..")
REFERENCE_MISSING = "the shared reference folder is not checked out beside the repo (CI has it)"


@pytest.mark.skipif(not os.path.exists(REFERENCE), reason=REFERENCE_MISSING)
def test_english_prompt_is_the_reference_text_verbatim():
    with open(os.path.join(REFERENCE, "teacher-prompt-en.txt"), encoding="utf-8") as handle:
        assert prompt_template("en") == handle.read()


@pytest.mark.skipif(not os.path.exists(PAPER), reason=REFERENCE_MISSING)
def test_english_prompt_is_the_papers_appendix_a1():
    with open(PAPER, encoding="utf-8") as handle:
        paper = handle.read()
    appendix = paper[paper.index("A.1 Rewriting Prompt") :]
    assert prompt_template("en").rstrip("\n") in appendix


def test_chinese_prompt_has_the_same_eight_rules_and_one_placeholder():
    english, chinese = prompt_template("en"), prompt_template("zh")
    numbered = re.compile(r"^(\d)\. ", re.MULTILINE)
    assert numbered.findall(chinese) == numbered.findall(english) == list("12345678")
    assert chinese.count("{text}") == english.count("{text}") == 1
    assert chinese.rstrip("\n").endswith("{text}")
    for kept in ("<output>", "</output>", "JavaScript", "‘\\n’"):
        assert kept in chinese
    assert len(re.findall(r"[\u4e00-\u9fff]", chinese)) > 100


def test_prompt_variant_follows_the_detected_language():
    assert prompt_variant("zh") == "zh"
    for language in ("en", "ja", "ru", "other", "unknown"):
        assert prompt_variant(language) == "en"
    assert build_prompt("学而时习之", "zh").startswith("1. 首先")
    assert build_prompt("hello", "en").endswith("Content to rewrite: hello\n")


def test_document_is_inserted_as_is_braces_and_placeholders_included():
    code = "function f() { return `{text}` + {a: 1}; }"
    prompt = build_prompt(code, "en")
    assert prompt == prompt_template("en").removesuffix("{text}\n") + code + "\n"


@pytest.mark.parametrize(
    ("generated", "truncated", "error", "expected"),
    [
        ("<output> Simple words. </output>", False, "", ("Simple words.", "rewritten")),
        ("[Text]\n<output>\nline one\nline two\n</output>\n", False, "", ("line one\nline two", "rewritten")),
        ("<output>use <output> and </output> tags</output>", False, "", ("use <output> and </output> tags", "rewritten")),
        ("just the rewrite, no tags", False, "", (None, "unparseable")),
        ("<output> opened, never closed", False, "", (None, "unparseable")),
        ("</output> closed before <output>", False, "", (None, "unparseable")),
        ("<output>   </output>", False, "", (None, "unparseable")),
        ("", False, "", (None, "unparseable")),
        ("<output>cut </output> short by max_to", True, "", (None, "truncated")),
        ("<output>fine</output>", False, "APITimeoutError: timed out", (None, "error")),
    ],
)
def test_parse_rewrite(generated, truncated, error, expected):
    assert parse_rewrite(generated, truncated, error) == expected


def test_structured_output_regex_accepts_the_prompt_shape_only():
    pattern = re.compile(STRUCTURED_OUTPUT_REGEX)
    assert pattern.fullmatch("<output>\nanything\n</output>")
    assert not pattern.fullmatch("no tags at all")


def test_config_defaults_are_the_papers_teacher_and_model_card():
    config = TeacherConfig()
    assert (config.backend, config.model) == ("vllm", PAPER_TEACHER_MODEL)
    assert config.sampling() == {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0}
    assert config.on_failure == "keep-original"
    assert config.max_tokens("x" * 1000) == 1000 + config.max_tokens_margin
    assert config.max_tokens("") > 16


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backend": "tgi"},
        {"on_failure": "skip"},
        {"backend": "openai"},
        {"replicas": 0},
        {"timeout_s": 0},
    ],
)
def test_config_rejects_bad_options_with_user_errors(kwargs):
    with pytest.raises(UserError):
        TeacherConfig(**kwargs)


def curate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from curate.jobs.cli import main; main()", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_cli_prints_the_prompt_verbatim():
    for lang in ("en", "zh"):
        result = curate("teacher", "prompt", "--lang", lang)
        assert result.returncode == 0, result.stderr
        assert result.stdout == prompt_template(lang)


def test_cli_rejects_an_unknown_prompt_language_in_one_line():
    result = curate("teacher", "prompt", "--lang", "fr")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["curate: error: --lang must be one of en, zh, got 'fr'"]


def test_plan_estimates_tokens_and_gpu_hours_from_raw_input(tmp_path):
    from curate.curation.tokenizer import encode_texts, save_tokenizer, train_bpe

    texts = ["The cat sat on the mat. " * 4, "def add(a, b):\n    return a + b\n", "学而时习之，不亦说乎？", "有朋自远方来，不亦乐乎？"]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)))
    tokenizer = train_bpe(texts, 300)
    save_tokenizer(tokenizer, str(tmp_path / "tokenizer.json"))

    result = curate("plan", "--regime", "D", "--input", str(corpus), "--tokenizer", str(tmp_path / "tokenizer.json"),
                    "--tokens-per-second", "100")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    document_tokens = sum(len(ids) for ids in encode_texts(tokenizer, texts))
    assert plan["documents"] == 2  # phase 1 is half of the input
    assert plan["languages"] == {"en": 1, "zh": 1}
    assert plan["generated_tokens"] > document_tokens / 2
    assert plan["prompt_tokens"] > plan["generated_tokens"]
    assert plan["max_generated_tokens"] == math.ceil(sum(TeacherConfig().max_tokens(t) for t in texts) / 2)
    assert plan["gpu_hours"] == round(plan["generated_tokens"] / 100 / 3600, 3)


def test_plan_refuses_other_regimes_in_one_line(tmp_path):
    result = curate("plan", "--regime", "C", "--input", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["curate: error: curate plan estimates the teacher of regime D; regime C has no teacher"]
