"""Training-step speed of the bundled trainer against transformers' LlamaForCausalLM.

CPU (always): tokens/s of one full training step (forward, token-weighted loss, backward,
clipping, AdamW) of our model and of LlamaForCausalLM with the same configuration and the
same optimizer, interleaved in the same run; the target is a ratio of at least 1.0.

GPU (when CUDA is present): MFU of the `paper-0.6b` preset at micro batch 4, sequence 4096,
bf16 autocast, by Megatron's FLOPs convention (trainer.model.megatron_flops_per_sample)
against the device's dense bf16 peak; the target is at least 40% on an H100.

    .venv/bin/python benchmarks/bench_train.py [--steps 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from curate.trainer.config import resolve_config
from curate.trainer.model import GPT, megatron_flops_per_sample, parameter_count
from curate.trainer.train import build_optimizer, peak_flops, train_step

CPU_MODEL = {
    "num_layers": 4, "hidden_size": 256, "ffn_hidden_size": 768, "num_attention_heads": 4,
    "num_query_groups": 2, "seq_length": 256, "global_batch_size": 8, "micro_batch_size": 4,
    "vocab_size": 4096, "train_samples": 8, "lr_warmup_samples": 0,
}
GPU_VOCAB = 32768


class HFLossModel(torch.nn.Module):
    """LlamaForCausalLM returning logits only, so both models share our train step and loss."""

    def __init__(self, config):
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        self.llama = LlamaForCausalLM(LlamaConfig(
            vocab_size=config.vocab_size, hidden_size=config.hidden_size,
            intermediate_size=config.ffn_hidden_size, num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_attention_heads, num_key_value_heads=config.num_query_groups,
            head_dim=config.head_dim, max_position_embeddings=config.seq_length,
            rms_norm_eps=config.norm_epsilon, rope_theta=float(config.rotary_base),
            tie_word_embeddings=True, attention_bias=False, mlp_bias=False, use_cache=False,
            attn_implementation="sdpa",
        ))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.llama(input_ids=input_ids, use_cache=False).logits


def step_seconds(model, optimizer, config, tokens, autocast_dtype) -> tuple[float, float]:
    """Wall-clock and this process's CPU seconds of one training step."""
    if tokens.is_cuda:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    train_step(model, optimizer, tokens, config.micro_batch_size, tokens.shape[0] * config.seq_length,
               1e-4, config.clip_grad, autocast_dtype)
    if tokens.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def cpu_comparison(steps: int) -> dict:
    config = resolve_config("tiny", CPU_MODEL)
    torch.manual_seed(0)
    tokens = torch.randint(0, config.vocab_size, (config.global_batch_size, config.seq_length + 1))
    models = {"curate": GPT(config), "transformers": HFLossModel(config)}
    with torch.no_grad():  # one forward each to make sure both compute the same kind of thing
        for model in models.values():
            assert model(tokens[:1, :-1]).shape == (1, config.seq_length, config.vocab_size)
    optimizers = {name: build_optimizer(model, config) for name, model in models.items()}
    times = {name: [] for name in models}
    for name, model in models.items():  # warm-up: allocates the optimizer state
        step_seconds(model, optimizers[name], config, tokens, None)
    for _ in range(steps):
        for name, model in models.items():
            times[name].append(step_seconds(model, optimizers[name], config, tokens, None))
    step_tokens = config.global_batch_size * config.seq_length
    wall = {name: step_tokens / statistics.median(t[0] for t in times[name]) for name in models}
    cpu = {name: step_tokens / statistics.median(t[1] for t in times[name]) for name in models}
    return {
        "config": {k: v for k, v in CPU_MODEL.items() if k not in ("train_samples", "lr_warmup_samples")},
        "parameters": parameter_count(config),
        "tokens_per_s_wall": wall,
        "tokens_per_cpu_s": cpu,
        "ratio_wall": wall["curate"] / wall["transformers"],
        "ratio_cpu": cpu["curate"] / cpu["transformers"],
    }


def gpu_mfu(steps: int, micro_batches: int) -> dict:
    device = torch.device("cuda")
    config = resolve_config("paper-0.6b", {"vocab_size": GPU_VOCAB, "global_batch_size": 4 * micro_batches})
    torch.manual_seed(0)
    model = GPT(config).to(device)
    tokens = torch.randint(0, config.vocab_size, (config.global_batch_size, config.seq_length + 1), device=device)
    optimizer = build_optimizer(model, config)
    timings = [step_seconds(model, optimizer, config, tokens, torch.bfloat16) for _ in range(steps + 2)][2:]
    step = statistics.median(wall for wall, _ in timings)
    peak = peak_flops(device)
    flops = megatron_flops_per_sample(config) * config.global_batch_size
    return {
        "device": torch.cuda.get_device_name(device),
        "micro_batch_size": 4, "micro_batches_per_step": micro_batches, "seq_length": config.seq_length,
        "vocab_size": GPU_VOCAB, "parameters": parameter_count(config),
        "tokens_per_s": config.global_batch_size * config.seq_length / step,
        "achieved_tflops": flops / step / 1e12,
        "mfu": flops / step / peak if peak else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="Measured steps per model (median is reported).")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is stable on shared cores).")
    parser.add_argument("--gpu-micro-batches", type=int, default=8, help="Micro batches per GPU step.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {"cpu": cpu_comparison(args.steps), "threads": args.threads}
    report["gpu"] = gpu_mfu(args.steps, args.gpu_micro_batches) if torch.cuda.is_available() else "not measured (no CUDA)"
    cpu = report["cpu"]
    for kind, unit in (("wall", "tokens/s"), ("cpu", "tokens per CPU-s")):
        rates = cpu["tokens_per_s_wall" if kind == "wall" else "tokens_per_cpu_s"]
        print(f"CPU {unit}: curate {rates['curate']:,.0f}, transformers {rates['transformers']:,.0f}, "
              f"ratio {cpu['ratio_' + kind]:.2f} (target >= 1.0)")
    if isinstance(report["gpu"], dict) and report["gpu"]["mfu"] is not None:
        print(f"GPU MFU of paper-0.6b: {100 * report['gpu']['mfu']:.1f}% on {report['gpu']['device']} (target >= 40%)")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
