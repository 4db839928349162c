"""Programming-language detection from text alone (no file names, no metadata).

A document counts as code when enough of its lines look like code (they end in `;`,
`{`, `}` or `:` after a statement keyword, carry operator-dense syntax, or open and close
Ruby's blocks) and one language's markers clearly score; the language is the one whose
markers (keywords, idioms, shebangs) score highest, weighted per line. Deterministic and fast: a few
compiled regular expressions over the first few thousand characters.
"""

from __future__ import annotations

import re

_SAMPLE_CHARS = 3000
_MIN_CODE_LINE_SHARE = 0.3
_MIN_SCORE = 3.0

# (pattern, weight, literals) per language; patterns match whole lines (re.MULTILINE). A pattern can only
# match a text that contains one of its literals (text the pattern itself requires), so a cheap substring test
# skips the regular-expression scan of most markers on most texts; () means always scan.
_MARKERS: dict[str, list[tuple[str, float, tuple[str, ...]]]] = {
    "python": [
        (r"^\s*def \w+\(.*\)\s*(->.*)?:\s*$", 3, ("def ",)),
        (r"^\s*class \w+(\(.*\))?:\s*$", 3, ("class ",)),
        (r"^\s*(from [\w.]+ )?import [\w.]+( as \w+)?(, \w+)*\s*$", 2, ("import ",)),
        (r"^\s*(if|elif|while|for|with|try|except|else|finally)\b.*:\s*$", 1, ("if", "while", "for", "with", "try", "except", "else", "finally")),
        (r"\bself\.\w+", 1, ("self.",)),
        (r"^\s*@\w+(\.\w+)*(\(.*\))?\s*$", 1, ("@",)),
        (r"^#!.*\bpython", 10, ("python",)),
        (r"^\s*(\"\"\"|''')", 1, ('"""', "'''")),
        (r"\bNone\b|\bTrue\b|\bFalse\b", 0.5, ("None", "True", "False")),
    ],
    "c": [
        (r"^\s*#\s*include\s*[<\"][\w./]+\.h[>\"]", 4, ("include",)),
        (r"^\s*#\s*(define|ifdef|ifndef|endif|if|undef)\b", 2, ("#",)),
        (r"^\s*(static\s+)?(unsigned\s+|const\s+)?(int|void|char|long|short|double|float|size_t|struct \w+)\s*\**\s*\w+\s*\(.*\)\s*\{?\s*$", 3, ("int", "void", "char", "long", "short", "double", "float", "size_t", "struct ")),
        (r"\b(printf|fprintf|malloc|free|memcpy|strlen|sizeof)\s*\(", 1.5, ("printf", "malloc", "free", "memcpy", "strlen", "sizeof")),
        (r"->\w+", 1, ("->",)),
        (r"\bNULL\b", 1, ("NULL",)),
        (r"^\s*(typedef )?struct \w*\s*\{", 2, ("struct ",)),
    ],
    "cpp": [
        (r"^\s*#\s*include\s*<(iostream|vector|string|map|memory|algorithm)>", 6, ("include",)),
        (r"\bstd::\w+", 3, ("std::",)),
        (r"^\s*template\s*<", 4, ("template",)),
        (r"^\s*namespace \w+\s*\{?", 3, ("namespace ",)),
        (r"\b(public|private|protected):\s*$", 2, ("public:", "private:", "protected:")),
        (r"(?<=\w)::\w+\s*\(", 1, ("::",)),
    ],
    "java": [
        (r"^\s*package [\w.]+;\s*$", 6, ("package ",)),
        (r"^\s*import (static )?java[x]?\.[\w.*]+;\s*$", 5, ("java",)),
        (r"^\s*import [\w.]+\.[A-Z]\w*;\s*$", 2, (";",)),
        (r"^\s*(public|private|protected)\s+(static\s+)?(final\s+)?(class|interface|enum)\s+\w+", 4, ("public", "private", "protected")),
        (r"^\s*(public|private|protected)\s+(static\s+)?(final\s+)?[\w<>\[\], ]+\s+\w+\s*\(.*\)\s*(throws [\w., ]+)?\s*\{?\s*$", 3, ("public", "private", "protected")),
        (r"^\s*@(Override|Test|Deprecated|SuppressWarnings)\b", 3, ("Override", "Test", "Deprecated", "SuppressWarnings")),
        (r"\bSystem\.(out|err)\.print", 3, ("System.",)),
        (r"\bnew [A-Z]\w*(<.*>)?\(", 1, ("new ",)),
    ],
    "javascript": [
        (r"^\s*(export\s+)?(async\s+)?function\s*\*?\s*\w*\s*\(.*\)\s*\{", 3, ("function",)),
        (r"^\s*(const|let|var)\s+[\w${}\[\], ]+\s*=", 2, ("const", "let", "var")),
        (r"=>", 1, ("=>",)),
        (r"\brequire\(['\"][\w@./-]+['\"]\)", 3, ("require(",)),
        (r"\bmodule\.exports\b|\bexports\.\w+\s*=", 4, ("exports",)),
        (r"\bconsole\.(log|error|warn)\(", 3, ("console.",)),
        (r"===|!==", 1.5, ("===", "!==")),
        (r"^\s*import .* from ['\"][\w@./-]+['\"];?\s*$", 3, (" from ",)),
        (r"^\s*['\"]use strict['\"];?\s*$", 4, ("use strict",)),
        (r"\bundefined\b|\bprototype\b", 1, ("undefined", "prototype")),
        (r"^#!.*\bnode\b", 10, ("#!",)),
    ],
    "perl": [
        (r"^#!.*\bperl\b", 10, ("#!",)),
        (r"^\s*use (strict|warnings|vars|constant|lib|base|parent)\b.*;", 4, ("use ",)),
        (r"^\s*use [A-Z][\w:]*.*;\s*$", 2, ("use ",)),
        (r"\bmy\s*[$@%(]", 3, ("my",)),
        (r"^\s*sub \w+\s*\{?", 3, ("sub ",)),
        (r"\$_\b|@_\b|\$\w+->\{|\$\w+\{", 2, ("$", "@_")),
        (r"=~\s*[ms]?/|!~", 3, ("=~", "!~")),
        (r"^\s*(package [\w:]+;|1;|__END__|__DATA__)\s*$", 3, ("package ", "1;", "__END__", "__DATA__")),
        (r"^=(head\d|pod|cut|item|over|back)\b", 3, ("=head", "=pod", "=cut", "=item", "=over", "=back")),
    ],
    "shell": [
        (r"^#!\s*/(usr/)?bin/(env\s+)?(ba|da|z|k)?sh\b", 10, ("#!",)),
        (r"^\s*(if|elif)\s+\[\[?\s.*\]\]?\s*;\s*then\s*$", 4, ("then",)),
        (r"^\s*(fi|esac|done)\s*$", 3, ("fi", "esac", "done")),
        (r"^\s*(then|do|else)\s*$", 2, ("then", "do", "else")),
        (r"^\s*for \w+ in .*;\s*do\s*$", 3, (";",)),
        (r"^\s*case .* in\s*$", 3, ("case ",)),
        (r"\$\{\w+[^}]*\}|\$\(\S", 1.5, ("${", "$(")),
        (r"^\s*(export\s+)?[A-Z_][A-Z0-9_]*=\S*\s*$", 1, ("=",)),
        (r"^\s*(echo|exit|local|shift|set -\w|unset|source|\.)\s", 1, ()),
        (r"^\s*\w+\s*\(\)\s*\{?\s*$", 3, ("()",)),
    ],
    "go": [
        (r"^package \w+\s*$", 3, ("package ",)),
        (r"^\s*func (\(.*\) )?\w+\(.*\)", 4, ("func ",)),
        (r"(?<=\w)\s*:=", 1.5, (":=",)),
        (r"\bfmt\.\w+\(", 3, ("fmt.",)),
        (r"^import \($|^import \"[\w/.]+\"", 4, ("import (", 'import "')),
    ],
    "rust": [
        (r"^\s*(pub(\(crate\))? )?fn \w+(<.*>)?\(", 4, ("fn ",)),
        (r"\blet mut \w+", 3, ("let mut ",)),
        (r"^\s*(pub )?(struct|enum|trait|impl)\b.*\{\s*$", 2, ("struct", "enum", "trait", "impl")),
        (r"^\s*use (std|crate|super)::", 4, ("std::", "crate::", "super::")),
        (r"(?<=\w)!\(", 1, ("!(",)),
    ],
    "ruby": [
        (r"^\s*def \w+[?!]?(\(.*\))?\s*$", 3, ("def ",)),
        (r"^\s*end\s*$", 1.5, ("end",)),
        (r"^\s*require ['\"][\w/]+['\"]\s*$", 3, ("require ",)),
        (r"^\s*puts\s", 2, ("puts",)),
        (r"^#!.*\bruby\b", 10, ("ruby",)),
        (r"\bdo \|\w+(, \w+)*\|", 3, ("do |",)),
    ],
}
_COMPILED = {
    language: [(re.compile(pattern, re.MULTILINE), weight, frozenset(literals)) for pattern, weight, literals in markers]
    for language, markers in _MARKERS.items()
}
_LITERALS = sorted({literal for markers in _MARKERS.values() for *_, literals in markers for literal in literals})
_CODE_LINE = re.compile(
    r"^\s*(.*[;{}]\s*$|[}\])]+;?\s*$|#\s*(include|define|if|ifdef|ifndef|endif)\b"
    r"|(def|class|if|for|while|elif|else|try|except|with)\b.*:\s*$|[@\w.\[\]'\"]+\s*[-+*/|&.]?=\s*\S|[\w.]+\(.*\)\s*$"
    r"|(return|import|from|use|my|sub|fi|done|esac|then|do|else|var|let|const|function|package|public|private"
    r"|echo|exit|export|local|raise|assert|yield|pass|break|continue)\b"
    # Ruby: a def without a colon, class and module headers, `end` (a line opening a `do |x|` block is
    # left out: a pattern for it doubled the time of this one).
    r"|def [\w.]+[?!=]?(\(.*\))?\s*$|(class|module) [A-Z][\w:]*( < [\w:]+)?\s*$|end\s*$"
    r"|(require|require_relative) ['\"]|attr_(reader|writer|accessor) :|puts (['\"]|[\w@.:]+\s*$))"
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
    present = {literal for literal in _LITERALS if literal in text}
    scores = {}
    for language, markers in _COMPILED.items():
        raw = sum(
            weight * len(pattern.findall(text))
            for pattern, weight, literals in markers
            if not literals or not literals.isdisjoint(present)
        )
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
