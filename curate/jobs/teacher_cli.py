"""`curate teacher prompt` and `curate plan`: the teacher's prompt, and what its rewrite of phase 1 will cost."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Iterator, Optional

import typer

from curate.curation.errors import UserError
from curate.curation.storage import join

teacher_app = typer.Typer(help="The teacher LLM that rewrites phase 1.", no_args_is_help=True)


def prompt(lang: str = typer.Option("en", "--lang", help="Prompt variant: en or zh.")) -> None:
    """Print the appendix A.1 rewriting prompt, verbatim, with its {text} placeholder."""
    from curate.curation.teacher.prompt import prompt_template

    typer.echo(prompt_template(lang), nl=False)


def phase1_texts(source: Optional[str], inputs: list[str], text_field: str) -> tuple[Iterator[str], float]:
    """Phase 1's texts and the share of them that is phase 1.

    From an A build (--from) exactly its phase-1 shards; from raw input every valid record,
    of which phase 1 is about half (before deduplication, so an upper estimate).
    """
    if source:
        from curate.curation.manifest import load_manifest
        from curate.curation.shards import read_shard

        phase = next(p for p in load_manifest(source)["phases"] if p["name"] == "phase-1")

        def from_shards() -> Iterator[str]:
            for shard in phase["shards"]:
                yield from read_shard(source, shard["path"]).column("text").to_pylist()

        return from_shards(), 1.0
    from curate.curation.ingest import IngestConfig, validate
    from curate.curation.readers import list_input_files, read_raw_records

    config = IngestConfig(text_field=text_field)

    def from_inputs() -> Iterator[str]:
        for index, file in enumerate(list_input_files(inputs)):
            for record in read_raw_records(file, index):
                document, _ = validate(record, config)
                if document is not None:
                    yield document["text"]

    return from_inputs(), 0.5


def estimate(texts: Iterator[str], share: float, tokenizer_path: str, tokens_per_second: float, regime: str) -> dict:
    """Prompt and generated tokens of rewriting `texts` (scaled by `share`) for `regime`, and GPU hours."""
    from curate.curation.detect import detect_language
    from curate.curation.teacher.config import TeacherConfig
    from curate.curation.teacher.parse import CLOSE_TAG, OPEN_TAG
    from curate.curation.teacher.prompt import build_prompt
    from curate.curation.tokenizer import encode_texts, load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    config = TeacherConfig()
    tags = len(encode_texts(tokenizer, [f"{OPEN_TAG}\n\n{CLOSE_TAG}"])[0])
    documents = prompt_tokens = document_tokens = budget = 0
    languages: Counter = Counter()
    for text in texts:
        language = detect_language(text)
        encoded = encode_texts(tokenizer, [build_prompt(text, language), text])
        documents += 1
        languages[language] += 1
        prompt_tokens += len(encoded[0])
        document_tokens += len(encoded[1])
        budget += config.max_tokens(text)
    generated = document_tokens + tags * documents
    return {
        "regime": regime,
        "documents": math.ceil(documents * share),
        "languages": {k: math.ceil(v * share) for k, v in sorted(languages.items())},
        "prompt_tokens": math.ceil(prompt_tokens * share),
        "generated_tokens": math.ceil(generated * share),
        "max_generated_tokens": math.ceil(budget * share),
        "tokens_per_second": tokens_per_second,
        "gpu_hours": round(generated * share / tokens_per_second / 3600, 3),
        "gpu_hours_max": round(budget * share / tokens_per_second / 3600, 3),
    }


def plan(
    regime: Optional[str] = typer.Option(None, "--regime", help="A regime with a teacher (default: the first registered)."),
    inputs: Optional[list[str]] = typer.Option(None, "--input", help="Raw input URL(s), as for build."),
    source: Optional[str] = typer.Option(None, "--from", help="A complete A build: plan its exact phase 1."),
    tokenizer: Optional[str] = typer.Option(
        None, help="tokenizer.json to count tokens with (the teacher's; default: the --from build's)."
    ),
    tokens_per_second: float = typer.Option(
        2000.0, help="Generated tokens per second per GPU (measure yours with benchmarks/bench_teacher.py)."
    ),
    text_field: str = typer.Option("text", help="Field holding the document text."),
) -> None:
    """Estimate the tokens the teacher reads and writes to rewrite phase 1, and the GPU hours at a given speed."""
    regime = _teacher_regime(regime)
    if not inputs and not source:
        raise UserError("curate plan needs --input (raw input) or --from (an A build)")
    if tokens_per_second <= 0:
        raise UserError(f"--tokens-per-second must be positive, got {tokens_per_second}")
    tokenizer_path = tokenizer or (join(source, "tokenizer.json") if source else None)
    if tokenizer_path is None:
        raise UserError("curate plan --input needs --tokenizer (the teacher's tokenizer.json)")
    texts, share = phase1_texts(source, list(inputs or ()), text_field)
    typer.echo(json.dumps(estimate(texts, share, tokenizer_path, tokens_per_second, regime), indent=2, sort_keys=True))


def _teacher_regime(name: Optional[str]) -> str:
    """The regime named, which must have a teacher, or the first registered that has one."""
    from curate.regimes import REGISTRY, get_regime

    taught = [regime.name for regime in REGISTRY.values() if regime.transform.teacher]
    if not taught:
        raise UserError("curate plan estimates a teacher's work, and no registered regime has a teacher")
    if name is None:
        return taught[0]
    regime = get_regime(name)
    if not regime.transform.teacher:
        raise UserError(f"curate plan estimates the teacher of regime {', '.join(taught)}; regime {name} has no teacher")
    return regime.name


def register(app: typer.Typer) -> None:
    """Add `curate teacher prompt` and `curate plan`."""
    teacher_app.command("prompt")(prompt)
    app.add_typer(teacher_app, name="teacher")
    app.command("plan")(plan)
