"""The model: parameter count of the paper's preset, initialisation, and the Hugging Face export."""

from __future__ import annotations

import math
import os

import pytest
import torch
from safetensors.torch import load_file
from test_trainer_support import tiny_run

from curate.trainer.config import resolve_config
from curate.trainer.model import GPT, megatron_flops_per_sample, parameter_count


def test_paper_preset_parameter_count_matches_the_formula():
    config = resolve_config("paper-0.6b", {"vocab_size": 32768})
    with torch.device("meta"):
        model = GPT(config)
    counted = sum(parameter.numel() for parameter in model.parameters())
    hidden, ffn, layers, kv = 1024, 4096, 32, 4 * 128
    per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * ffn + 2 * hidden
    expected = layers * per_layer + 32768 * hidden + hidden
    assert counted == parameter_count(config) == expected
    assert 0.5e9 < expected < 0.7e9  # "approximately 0.6B"
    untied = resolve_config("paper-0.6b", {"vocab_size": 32768, "untie_embeddings_and_output_weights": True})
    assert parameter_count(untied) == expected + 32768 * hidden


def test_parameter_names_are_llama_names():
    config = resolve_config("tiny", {"vocab_size": 256, "num_layers": 1})
    names = set(GPT(config).state_dict())
    assert names == {
        "model.embed_tokens.weight", "model.norm.weight",
        *(f"model.layers.0.self_attn.{p}_proj.weight" for p in "qkvo"),
        *(f"model.layers.0.mlp.{p}_proj.weight" for p in ("gate", "up", "down")),
        "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
    }
    untied = resolve_config("tiny", {"vocab_size": 256, "num_layers": 1, "untie_embeddings_and_output_weights": True})
    assert "lm_head.weight" in GPT(untied).state_dict()


def test_normal_init_scales_output_projections_and_xavier_is_uniform():
    torch.manual_seed(0)
    config = resolve_config("tiny", {"vocab_size": 256, "hidden_size": 256, "ffn_hidden_size": 1024, "num_layers": 8})
    model = GPT(config)
    block = model.model.layers[0]
    assert block.mlp.up_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.mlp.down_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert torch.all(block.input_layernorm.weight == 1)
    xavier = GPT(resolve_config("tiny", {"vocab_size": 256, "hidden_size": 256, "ffn_hidden_size": 1024,
                                         "init": "xavier-uniform"}))
    weight = xavier.model.layers[0].mlp.up_proj.weight
    bound = math.sqrt(6 / (256 + 1024))
    assert weight.abs().max().item() <= bound and weight.abs().max().item() > 0.95 * bound


def test_megatron_flops_convention():
    config = resolve_config("paper-0.6b", {"vocab_size": 32768})
    flops = megatron_flops_per_sample(config)
    # 6 x parameters x tokens plus attention scores (12 x layers x hidden x seq^2) over full sequences.
    dense = 6 * parameter_count(config) * 4096
    attention = 12 * 32 * 1024 * 4096 * 4096
    assert flops == pytest.approx(dense + attention, rel=0.01)


@pytest.mark.parametrize("untied", [False, True])
def test_hf_export_gives_the_same_logits(tmp_path, untied):
    transformers = pytest.importorskip("transformers")
    run = tiny_run(tmp_path, {"untie_embeddings_and_output_weights": untied})
    from typer.testing import CliRunner

    from curate.jobs.cli import app
    from curate.trainer.checkpoint import read_state, resolve_checkpoint
    from curate.trainer.config import TrainConfig

    exported = tmp_path / "hf"
    result = CliRunner().invoke(app, ["export", "hf", str(run / "checkpoints"), "--output", str(exported)])
    assert result.exit_code == 0, result.output
    checkpoint = resolve_checkpoint(run)
    saved = read_state(checkpoint)["config"]
    config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    ours = GPT(config)
    ours.load_state_dict(load_file(os.path.join(checkpoint, "model.safetensors")))
    theirs = transformers.LlamaForCausalLM.from_pretrained(exported, attn_implementation="eager")
    assert theirs.config.tie_word_embeddings is (not untied)
    tokens = torch.randint(0, config.vocab_size, (2, config.seq_length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (ours.eval()(tokens) - theirs.eval()(tokens).logits).abs().max().item()
    assert difference < 1e-4
    tokenizer = transformers.AutoTokenizer.from_pretrained(exported)
    assert tokenizer.eos_token == "<|endoftext|>"
