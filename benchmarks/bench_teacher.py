"""Teacher throughput: the Ray pipeline (`rewrite_phase1`) against bare `vllm.LLM` in one run.

Both sides rewrite the same documents with the same model, prompts, sampling settings,
per-document seeds and engine settings; both are timed end to end, engine start
included (that is what a build pays), and the bare side's generate call alone is timed
too. The pipeline's overhead is its extra wall time per generated token, end to end and
once the bare engine's start is taken off (the target, under 10%, is about the latter on
workloads where generation dominates).

    .venv/bin/python benchmarks/bench_teacher.py                 # tiny random Qwen3 on CPU
    .venv/bin/python benchmarks/bench_teacher.py --model DIR --docs 2000 --kv-cache-gib 0   # a real model on a GPU

With a random-weight model every request runs to its `max_tokens`, so both sides
generate the same number of tokens.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time

import pyarrow as pa

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
CORPUS = os.path.join(REPO, "..", "shared", "corpora", "mixed.jsonl.gz")


def load_documents(count: int, max_chars: int) -> list[dict]:
    """The first `count` documents of the shared corpus no longer than `max_chars`."""
    documents = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if 0 < len(record["text"]) <= max_chars:
                documents.append({"id": record["id"], "text": record["text"]})
                if len(documents) == count:
                    break
    return documents


def write_source(root: str, documents: list[dict], shard_rows: int) -> tuple[list[str], str]:
    """A-like phase-1 shards of the documents and a tokenizer.json beside them."""
    from curate.curation.shards import shard_name, write_shard
    from curate.curation.tokenizer import encode_texts, save_tokenizer, train_bpe

    texts = [d["text"] for d in documents]
    tokenizer = train_bpe(texts, 1000)
    save_tokenizer(tokenizer, f"{root}/tokenizer.json")
    relpaths = []
    for index, start in enumerate(range(0, len(documents), shard_rows)):
        part = documents[start : start + shard_rows]
        table = pa.table(
            {
                "id": [d["id"] for d in part],
                "text": [d["text"] for d in part],
                "input_ids": pa.array(encode_texts(tokenizer, [d["text"] for d in part]), pa.list_(pa.int32())),
            }
        )
        relpaths.append(f"phase-1/{shard_name(index)}")
        write_shard(table, root, relpaths[-1])
    return relpaths, f"{root}/tokenizer.json"


def run_bare(documents: list[dict], config) -> dict:
    """vllm.LLM.chat over every document: engine start and generation timed apart."""
    import vllm

    from curate.curation.detect import detect_language
    from curate.curation.teacher.prompt import build_prompt
    from curate.curation.teacher.requests import document_seed
    from curate.curation.teacher.vllm_backend import engine_kwargs

    started = time.perf_counter()
    llm = vllm.LLM(model=config.model, **engine_kwargs(config, on_gpu=vllm.platforms.current_platform.is_cuda()))
    engine_ready = time.perf_counter()
    messages = [[{"role": "user", "content": build_prompt(d["text"], detect_language(d["text"]))}] for d in documents]
    params = [
        vllm.SamplingParams(
            **config.sampling(), max_tokens=config.max_tokens(d["text"]), seed=document_seed(config.seed, d["id"])
        )
        for d in documents
    ]
    outputs = llm.chat(messages, params, use_tqdm=False)
    finished = time.perf_counter()
    generated = sum(len(o.outputs[0].token_ids) for o in outputs)
    del llm
    return {
        "engine_start_s": engine_ready - started,
        "generate_s": finished - engine_ready,
        "total_s": finished - started,
        "generated_tokens": generated,
    }


def run_pipeline(source: str, relpaths: list[str], tokenizer: str, out: str, config) -> dict:
    """rewrite_phase1 on a local Ray: read, prompt, engine pool, parse, re-tokenize, write."""
    import ray

    from curate.regimes.teacher_rewrite import rewrite_phase1

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    started = time.perf_counter()
    _, stats = rewrite_phase1(source, relpaths, out, tokenizer, config)
    finished = time.perf_counter()
    ray.shutdown()
    return {"total_s": finished - started, "generated_tokens": stats["generated_tokens"], "statuses": stats["status_counts"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: build a tiny random Qwen3)")
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--max-chars", type=int, default=300)
    parser.add_argument("--shard-rows", type=int, default=64)
    parser.add_argument("--kv-cache-gib", type=float, default=0.25, help="0: vLLM's default (GPUs)")
    args = parser.parse_args()

    from curate.curation.teacher.config import TeacherConfig

    work = tempfile.mkdtemp(prefix="bench-teacher-")
    model = args.model
    if model is None:
        from tests.tiny_qwen3 import build_tiny_qwen3

        model = build_tiny_qwen3(f"{work}/tiny-qwen3")
    config = TeacherConfig(
        model=model,
        kv_cache_memory_bytes=int(args.kv_cache_gib * (1 << 30)) or None,
        max_model_len=4096,
        enforce_eager=True,
        batch_size=64,
    )
    documents = load_documents(args.docs, args.max_chars)
    relpaths, tokenizer = write_source(f"{work}/A", documents, args.shard_rows)

    bare = run_bare(documents, config)
    pipeline = run_pipeline(f"{work}/A", relpaths, tokenizer, f"{work}/D", config)
    bare_rate = bare["generated_tokens"] / bare["total_s"]
    pipeline_rate = pipeline["generated_tokens"] / pipeline["total_s"]
    result = {
        "documents": len(documents),
        "model": "tiny random Qwen3 (2 layers, hidden 64)" if args.model is None else args.model,
        "bare": bare | {"tokens_per_s": round(bare_rate, 1), "generate_tokens_per_s": round(bare["generated_tokens"] / bare["generate_s"], 1)},
        "pipeline": pipeline | {"tokens_per_s": round(pipeline_rate, 1)},
        "pipeline_overhead": round(bare_rate / pipeline_rate - 1, 3),
        # Assumes the pipeline's engine starts as fast as the bare one: what is left is
        # the pipeline's cost per generated token once both engines are up.
        "pipeline_overhead_after_engine_start": round(
            (pipeline["total_s"] - bare["engine_start_s"]) / bare["generate_s"] - 1, 3
        ),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
