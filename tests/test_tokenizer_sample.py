"""A build's tokenizer training sample: its texts in order up to the one that reaches the limit."""

from __future__ import annotations

from curate.curation.tokenizer import leading_texts


def test_the_sample_ends_with_the_text_that_reaches_the_limit():
    texts = ["abc", "de", "fghij", "k"]
    assert list(leading_texts(texts, 5)) == ["abc", "de"]  # 5 characters reached exactly
    assert list(leading_texts(texts, 6)) == ["abc", "de", "fghij"]  # reached inside the third text
    assert list(leading_texts(texts, 100)) == texts  # a small input trains on all of it
    assert list(leading_texts(iter(texts), 1)) == ["abc"]  # one pass over an iterator
