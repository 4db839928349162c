"""Reading the rewrite out of a teacher's answer, and naming why when that fails.

The prompt asks for `<output> ... </output>`. The rewrite is everything between the
first `<output>` and the last `</output>`, so a document that itself contains these tags
(which the teacher copies into its rewrite) still comes back whole.
"""

from __future__ import annotations

OPEN_TAG = "<output>"
CLOSE_TAG = "</output>"
# For vLLM structured outputs: the whole generation must have the shape the prompt asks for.
STRUCTURED_OUTPUT_REGEX = r"<output>[\s\S]*</output>"

REWRITTEN = "rewritten"
UNPARSEABLE = "unparseable"
TRUNCATED = "truncated"
ERROR = "error"
STATUSES = (REWRITTEN, UNPARSEABLE, TRUNCATED, ERROR)


def extract_output(generated: str) -> str | None:
    """The text between the first opening and the last closing tag, stripped; None without both."""
    start = generated.find(OPEN_TAG)
    end = generated.rfind(CLOSE_TAG)
    if start < 0 or end < start + len(OPEN_TAG):
        return None
    return generated[start + len(OPEN_TAG) : end].strip()


def parse_rewrite(generated: str, truncated: bool, error: str = "") -> tuple[str | None, str]:
    """(rewrite or None, rewrite_status) of one answer.

    A truncated answer is never trusted, even with both tags: the closing tag it shows may
    be one copied from the document before the teacher was cut off.
    """
    if error:
        return None, ERROR
    if truncated:
        return None, TRUNCATED
    rewrite = extract_output(generated)
    if not rewrite:
        return None, UNPARSEABLE
    return rewrite, REWRITTEN
