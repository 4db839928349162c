"""Benchmark: VL prompt de-duplication on a generated corpus with a known duplication rate near 75%.

The generator builds every prompt field from whole sentences it picked, so it knows how many
prompt segments each record has and how many of them are copies of the instruction in another
field: that is the known duplication rate, the paper's baseline (about 75%). The benchmark checks
that the de-duplication measures the same rate before, and 0 after, and reports records/s:

- baseline: parse each JSON line and re-encode it (what any pass over the records costs);
- library: parse, de-duplicate (`curate.dedup.prompt_dedup.dedup_record`), re-encode, one process;
- build: `curate build --regime VL` (`run_build`) end to end on a local Ray (ingest, dedup, seeded sort, shards, stats).

    .venv/bin/python benchmarks/bench_vl.py [--records 20000] [--cpus 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from curate.curation.vl import decode_record, encode_record  # noqa: E402
from curate.dedup.prompt_dedup import PromptDedupConfig, dedup_record  # noqa: E402

INSTRUCTIONS = [
    ["Look at the image carefully and answer the question.", "Answer with a single word or phrase."],
    ["Describe the image in detail.", "Mention every object you can see and where it is."],
    ["Read all the text in the image.", "Then answer the question using only that text.",
     "If the text is unreadable, say so."],
    ["You are shown a chart.", "Answer the question about the chart in one sentence."],
    ["Examine the document image and extract the requested field.", "Give the value exactly as printed."],
    ["First describe what you see, then answer the question.", "Keep your answer under fifty words."],
    ["Answer the multiple-choice question about the image.", "Reply with the letter of the correct option only."],
    ["Count the objects the question asks about.", "Reply with a number."],
    ["请仔细观察图片并回答问题。", "请用一个词或短语回答。"],
    ["Identify the landmark shown in the photo.", "Explain which visual clues support your answer."],
]
SUBJECTS = ["a red bus", "two children", "a wooden table", "a bar chart", "an invoice", "a street sign",
            "a black cat", "a mountain lake", "a kitchen counter", "a crowded market", "a receipt", "a bicycle"]
PLACES = ["on a city street", "in a park", "next to a window", "under a bridge", "at night", "in the snow",
          "on a white background", "near the harbour", "inside a museum", "on a desk"]
QUESTIONS = ["What color is {s}?", "How many people are near {s}?", "What is written above {s}?",
             "Is {s} on the left or the right?", "What time of day is it in the photo of {s}?"]
ANSWERS = ["Red.", "Three.", "On the left side of the frame.", "It is early morning, judging by the light.",
           "The total is 42.10 dollars.", "B"]
PERSONAS = ["You are a helpful visual assistant.", "You are an expert at reading documents."]
THUMBNAIL = "data:image/jpeg;base64," + "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDAwM" * 4


def _caption(rng: random.Random) -> str:
    return f"A photo of {rng.choice(SUBJECTS)} {rng.choice(PLACES)}."


def prompt_fields(rng: random.Random) -> tuple[dict[str, list[str]], int]:
    """Each prompt field as the sentences it is made of, and how many of them are removable copies.

    The user turn holds the instruction and the question (the canonical copies). Other fields copy
    the instruction (system, caption, metadata template, OCR) and the question (metadata, OCR), as
    collection pipelines do; captions and OCR sometimes hold their own text as well.
    """
    instruction = rng.choice(INSTRUCTIONS)
    question = rng.choice(QUESTIONS).format(s=rng.choice(SUBJECTS))
    duplicated = rng.random() < 0.97

    def copy_of(sentences: list[str]) -> list[str]:
        return list(sentences) if duplicated and rng.random() < 0.98 else []

    fields = {
        "user": instruction + [question],
        "system": ([rng.choice(PERSONAS)] if rng.random() < 0.1 else []) + copy_of(instruction),
        "caption": copy_of(instruction) + ([_caption(rng)] if rng.random() < 0.2 else []),
        "template": copy_of(instruction),
        "question": copy_of([question]),
        "ocr": (["TOTAL 42.10"] if rng.random() < 0.1 else []) + copy_of(instruction + [question]),
    }
    canonical = set(fields["user"])
    removable = sum(sentence in canonical for name, sentences in fields.items() if name != "user" for sentence in sentences)
    return fields, removable


def make_record(rng: random.Random, index: int) -> tuple[dict, int, int]:
    """One record in one of the three shapes, its prompt segment count and its removable copies."""
    fields, removable = prompt_fields(rng)
    segments = sum(len(sentences) for sentences in fields.values())
    system, user = " ".join(fields["system"]), fields["user"]
    shared = {
        "caption": " ".join(fields["caption"]),
        "ocr": "\n".join(fields["ocr"]),
        "metadata": {"template": " ".join(fields["template"]), "question": " ".join(fields["question"])},
        "source": "synthetic-vqa",
    }
    answer = rng.choice(ANSWERS)
    shape = rng.random()
    if shape < 0.5:
        turns = [{"from": "system", "value": system}] if system else []
        turns += [{"from": "human", "value": "<image>\n" + "\n".join(user)}, {"from": "gpt", "value": answer}]
        record = {"id": f"llava-{index:07d}", "image": f"coco/train2017/{index:012d}.jpg", "conversations": turns}
    elif shape < 0.8:
        messages = [{"role": "system", "content": system}] if system else []
        messages += [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": THUMBNAIL}},
                                         {"type": "text", "text": " ".join(user)}]},
            {"role": "assistant", "content": answer},
        ]
        record = {"messages": messages}
    else:
        record = {"image": f"https://example.com/vqa/{index}.png", "system": system, "user": "\n".join(user),
                  "answer": answer}
    return record | shared, segments, removable


def generate(path: str, records: int, seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    total_segments = total_removable = 0
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(records):
            record, segments, removable = make_record(rng, index)
            total_segments += segments
            total_removable += removable
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return total_segments, total_removable


def time_pass(lines: list[str], dedup: bool) -> tuple[float, float, int, int, int, int]:
    """Wall and CPU seconds of one pass over the lines, and the segment counts it measured."""
    config = PromptDedupConfig()
    segments = removed = segments_after = removed_after = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for line in lines:
        text, blobs = encode_record(json.loads(line))
        record = decode_record(text, blobs)
        if dedup:
            record, _, stats = dedup_record(record, config)
            segments += stats.prompt.segments
            removed += stats.prompt.duplicate_segments
            segments_after += stats.segments_after
            removed_after += stats.duplicate_segments_after
        encode_record(record)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return wall, cpu, segments, removed, segments_after, removed_after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        corpus = os.path.join(work, "vl.jsonl")
        known_segments, known_removable = generate(corpus, args.records, args.seed)
        with open(corpus, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
        size_mb = os.path.getsize(corpus) / 1e6
        print(f"corpus: {args.records:,} records, {size_mb:.1f} MB, known duplication rate "
              f"{known_removable / known_segments:.2%} ({known_removable:,} of {known_segments:,} prompt segments)")

        base_seconds, base_cpu, *_ = time_pass(lines, dedup=False)
        lib_seconds, lib_cpu, segments, removed, segments_after, removed_after = time_pass(lines, dedup=True)
        print(f"measured duplication rate before {removed / segments:.2%} ({removed:,} of {segments:,}), "
              f"after {removed_after / segments_after:.2%} ({removed_after:,} of {segments_after:,})")

        import ray

        from curate.jobs.build import BuildConfig, RunOptions, run_build
        from curate.jobs.ray_cluster import init_ray

        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        init_ray(num_cpus=args.cpus)
        started = time.perf_counter()
        config = BuildConfig(regime="VL", inputs=(corpus,))
        manifest = run_build(config, RunOptions(output=os.path.join(work, "out"), quiet=True))["manifest"]
        build_seconds = time.perf_counter() - started
        ray.shutdown()
        vl = manifest["vl"]

        rows = [
            ("baseline: parse + re-encode, 1 process", base_seconds, f"{args.records / base_cpu:,.0f}"),
            ("library: parse + dedup + re-encode, 1 process", lib_seconds, f"{args.records / lib_cpu:,.0f}"),
            (f"build: run_build --regime VL on Ray, {args.cpus} CPUs", build_seconds, "-"),
        ]
        print()
        print("| pass | wall s | records/s (wall) | records per CPU-second | wall vs baseline |")
        print("|---|---:|---:|---:|---:|")
        for name, seconds, per_cpu in rows:
            print(f"| {name} | {seconds:.2f} | {args.records / seconds:,.0f} | {per_cpu} | {base_seconds / seconds:.2f}x |")
        print()
        print(f"build stats: duplication rate before {vl['duplication_rate_before']:.2%}, "
              f"after {vl['duplication_rate_after']:.2%}; tokens removed {vl['token_share_removed']:.2%}; "
              f"records changed {vl['records_changed']:,} of {vl['records']:,}")
        for name, field in vl["fields"].items():
            print(f"  {name:<10} segments {field['segments']:>8,}  duplicated {field['duplication_rate']:7.2%}  "
                  f"tokens removed {field['token_share_removed']:7.2%}  records changed {field['records_changed']:>7,}")
        if removed != known_removable or segments != known_segments:
            raise SystemExit(f"measured {removed}/{segments} differs from the known {known_removable}/{known_segments}")


if __name__ == "__main__":
    main()
