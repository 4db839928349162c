"""Programming-language detection from text alone (no file names, no metadata).

A document counts as code when enough of its lines look like code (they end in `;`,
`{`, `}` or `:` after a statement keyword, or carry operator-dense syntax) and one
language's markers clearly score; the language is the one whose markers (keywords,
idioms, shebangs) score highest, weighted per line. Deterministic and fast: a few
compiled regular expressions over the first few thousand characters.
"""

from __future__ import annotations

import re

_SAMPLE_CHARS = 3000
_MIN_CODE_LINE_SHARE = 0.3
_MIN_SCORE = 3.0

# (pattern, weight) per language; patterns match whole lines (re.MULTILINE).
_MARKERS: dict[str, list[tuple[str, float]]] = {
    "python": [
        (r"^\s*def \w+\(.*\)\s*(->.*)?:\s*$", 3),
        (r"^\s*class \w+(\(.*\))?:\s*$", 3),
        (r"^\s*(from [\w.]+ )?import [\w.]+( as \w+)?(, \w+)*\s*$", 2),
        (r"^\s*(if|elif|while|for|with|try|except|else|finally)\b.*:\s*$", 1),
        (r"\bself\.\w+", 1),
        (r"^\s*@\w+(\.\w+)*(\(.*\))?\s*$", 1),
        (r"^#!.*\bpython", 10),
        (r"^\s*(\"\"\"|''')", 1),
        (r"\bNone\b|\bTrue\b|\bFalse\b", 0.5),
    ],
    "c": [
        (r"^\s*#\s*include\s*[<\"][\w./]+\.h[>\"]", 4),
        (r"^\s*#\s*(define|ifdef|ifndef|endif|if|undef)\b", 2),
        (r"^\s*(static\s+)?(unsigned\s+|const\s+)?(int|void|char|long|short|double|float|size_t|struct \w+)\s*\**\s*\w+\s*\(.*\)\s*\{?\s*$", 3),
        (r"\b(printf|fprintf|malloc|free|memcpy|strlen|sizeof)\s*\(", 1.5),
        (r"->\w+", 1),
        (r"\bNULL\b", 1),
        (r"^\s*(typedef )?struct \w*\s*\{", 2),
    ],
    "cpp": [
        (r"^\s*#\s*include\s*<(iostream|vector|string|map|memory|algorithm)>", 6),
        (r"\bstd::\w+", 3),
        (r"^\s*template\s*<", 4),
        (r"^\s*namespace \w+\s*\{?", 3),
        (r"\b(public|private|protected):\s*$", 2),
        (r"(?<=\w)::\w+\s*\(", 1),
    ],
    "java": [
        (r"^\s*package [\w.]+;\s*$", 6),
        (r"^\s*import (static )?java[x]?\.[\w.*]+;\s*$", 5),
        (r"^\s*import [\w.]+\.[A-Z]\w*;\s*$", 2),
        (r"^\s*(public|private|protected)\s+(static\s+)?(final\s+)?(class|interface|enum)\s+\w+", 4),
        (r"^\s*(public|private|protected)\s+(static\s+)?(final\s+)?[\w<>\[\], ]+\s+\w+\s*\(.*\)\s*(throws [\w., ]+)?\s*\{?\s*$", 3),
        (r"^\s*@(Override|Test|Deprecated|SuppressWarnings)\b", 3),
        (r"\bSystem\.(out|err)\.print", 3),
        (r"\bnew [A-Z]\w*(<.*>)?\(", 1),
    ],
    "javascript": [
        (r"^\s*(export\s+)?(async\s+)?function\s*\*?\s*\w*\s*\(.*\)\s*\{", 3),
        (r"^\s*(const|let|var)\s+[\w${}\[\], ]+\s*=", 2),
        (r"=>", 1),
        (r"\brequire\(['\"][\w@./-]+['\"]\)", 3),
        (r"\bmodule\.exports\b|\bexports\.\w+\s*=", 4),
        (r"\bconsole\.(log|error|warn)\(", 3),
        (r"===|!==", 1.5),
        (r"^\s*import .* from ['\"][\w@./-]+['\"];?\s*$", 3),
        (r"^\s*['\"]use strict['\"];?\s*$", 4),
        (r"\bundefined\b|\bprototype\b", 1),
        (r"^#!.*\bnode\b", 10),
    ],
    "perl": [
        (r"^#!.*\bperl\b", 10),
        (r"^\s*use (strict|warnings|vars|constant|lib|base|parent)\b.*;", 4),
        (r"^\s*use [A-Z][\w:]*.*;\s*$", 2),
        (r"\bmy\s*[$@%(]", 3),
        (r"^\s*sub \w+\s*\{?", 3),
        (r"\$_\b|@_\b|\$\w+->\{|\$\w+\{", 2),
        (r"=~\s*[ms]?/|!~", 3),
        (r"^\s*(package [\w:]+;|1;|__END__|__DATA__)\s*$", 3),
        (r"^=(head\d|pod|cut|item|over|back)\b", 3),
    ],
    "shell": [
        (r"^#!\s*/(usr/)?bin/(env\s+)?(ba|da|z|k)?sh\b", 10),
        (r"^\s*(if|elif)\s+\[\[?\s.*\]\]?\s*;\s*then\s*$", 4),
        (r"^\s*(fi|esac|done)\s*$", 3),
        (r"^\s*(then|do|else)\s*$", 2),
        (r"^\s*for \w+ in .*;\s*do\s*$", 3),
        (r"^\s*case .* in\s*$", 3),
        (r"\$\{\w+[^}]*\}|\$\(\S", 1.5),
        (r"^\s*(export\s+)?[A-Z_][A-Z0-9_]*=\S*\s*$", 1),
        (r"^\s*(echo|exit|local|shift|set -\w|unset|source|\.)\s", 1),
        (r"^\s*\w+\s*\(\)\s*\{?\s*$", 3),
    ],
    "go": [
        (r"^package \w+\s*$", 3),
        (r"^\s*func (\(.*\) )?\w+\(.*\)", 4),
        (r"(?<=\w)\s*:=", 1.5),
        (r"\bfmt\.\w+\(", 3),
        (r"^import \($|^import \"[\w/.]+\"", 4),
    ],
    "rust": [
        (r"^\s*(pub(\(crate\))? )?fn \w+(<.*>)?\(", 4),
        (r"\blet mut \w+", 3),
        (r"^\s*(pub )?(struct|enum|trait|impl)\b.*\{\s*$", 2),
        (r"^\s*use (std|crate|super)::", 4),
        (r"(?<=\w)!\(", 1),
    ],
    "ruby": [
        (r"^\s*def \w+[?!]?(\(.*\))?\s*$", 3),
        (r"^\s*end\s*$", 1.5),
        (r"^\s*require ['\"][\w/]+['\"]\s*$", 3),
        (r"^\s*puts\s", 2),
        (r"^#!.*\bruby\b", 10),
        (r"\bdo \|\w+(, \w+)*\|", 3),
    ],
}
_COMPILED = {
    language: [(re.compile(pattern, re.MULTILINE), weight) for pattern, weight in markers]
    for language, markers in _MARKERS.items()
}
_CODE_LINE = re.compile(
    r"^\s*(.*[;{}]\s*$|[}\])]+;?\s*$|#\s*(include|define|if|ifdef|ifndef|endif)\b"
    r"|(def|class|if|for|while|elif|else|try|except|with)\b.*:\s*$|[\w.\[\]'\"]+\s*[-+*/|&.]?=\s*\S|[\w.]+\(.*\)\s*$"
    r"|(return|import|from|use|my|sub|fi|done|esac|then|do|else|var|let|const|function|package|public|private"
    r"|echo|exit|export|local|raise|assert|yield|pass|break|continue)\b)"
)
# Licence headers and other comments at the top of a file say nothing about its language.
_LEADING_COMMENTS = re.compile(
    r"\A(?:\s*(?:/\*.*?\*/|//[^\n]*|#(?!!|\s*(?:include|define|if|ifdef|ifndef|pragma)\b)[^\n]*))*", re.DOTALL
)
_COMMENT_LINE = re.compile(r"^\s*(//|/\*|\*|#(?!\s*(include|define|if|ifdef|ifndef|endif|else|undef|pragma)\b|!))")


def code_line_share(text: str) -> float:
    """Share of non-blank, non-comment lines that look like source code."""
    lines = [line for line in text.splitlines() if line.strip() and not _COMMENT_LINE.match(line)]
    if not lines:
        return 0.0
    return sum(1 for line in lines if _CODE_LINE.match(line)) / len(lines)


def language_scores(text: str) -> dict[str, float]:
    """Marker score per language, normalized per 100 non-blank lines (at least 20)."""
    lines = max(20, sum(1 for line in text.splitlines() if line.strip()))
    scores = {}
    for language, markers in _COMPILED.items():
        raw = sum(weight * len(pattern.findall(text)) for pattern, weight in markers)
        scores[language] = 100.0 * raw / lines
    return scores


def detect_code_language(text: str) -> str | None:
    """The programming language of `text`, or None for prose and other non-code text."""
    start = _LEADING_COMMENTS.match(text).end()
    sample = text[start : start + _SAMPLE_CHARS]
    if code_line_share(sample) < _MIN_CODE_LINE_SHARE:
        return None
    scores = language_scores(sample)
    language = max(sorted(scores), key=scores.__getitem__)
    if scores[language] < _MIN_SCORE:
        return None
    if language == "c" and scores["cpp"] >= 0.5 * scores["c"]:
        return "cpp"
    return language
