"""A tokenizer's training sample: its texts in order up to the one that reaches the limit."""

from __future__ import annotations

import json

from curate.curation import tokenizer as tokenizer_module
from curate.curation.tokenizer import leading_texts, train_bpe
from curate.jobs.build_cli import train_tokenizer


def test_the_sample_ends_with_the_text_that_reaches_the_limit():
    texts = ["abc", "de", "fghij", "k"]
    assert list(leading_texts(texts, 5)) == ["abc", "de"]  # 5 characters reached exactly
    assert list(leading_texts(texts, 6)) == ["abc", "de", "fghij"]  # reached inside the third text
    assert list(leading_texts(texts, 100)) == texts  # a small input trains on all of it
    assert list(leading_texts(iter(texts), 1)) == ["abc"]  # one pass over an iterator


def test_tokenizer_train_command_trains_on_the_sample(tmp_path, monkeypatch):
    """`curate tokenizer train` takes the build's sample of its input, in input order."""
    monkeypatch.setattr(tokenizer_module, "TOKENIZER_TRAIN_CHARS", 1000)
    texts = ["alpha beta gamma " * 40, "delta epsilon " * 40, "zeta eta theta iota " * 400]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": str(i), "text": text}) + "\n" for i, text in enumerate(texts)))
    train_tokenizer(inputs=[str(source)], vocab_size=300, output=tmp_path / "tok.json", text_field="text")
    assert (tmp_path / "tok.json").read_text() == train_bpe(texts[:2], 300).to_str()
