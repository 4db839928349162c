"""The tiny preset learns on a real build of (a slice of) the embedded corpus."""

from __future__ import annotations

import json
from itertools import islice

from test_trainer_support import one_torch_thread


def test_tiny_preset_loss_falls_on_an_embedded_corpus_build(ray_local, tmp_path):
    from curate.curation.embedded import embedded_records
    from curate.jobs.build import BuildConfig, RunOptions, run_build
    from curate.trainer.config import resolve_config
    from curate.trainer.train import train

    # Every 25th record of the embedded corpus (standard-library code and pydoc prose) keeps the build quick.
    sample = tmp_path / "embedded-slice.jsonl"
    sample.write_text("".join(json.dumps(record) + "\n" for record in islice(embedded_records(), 0, None, 25)))
    config = BuildConfig(regime="A", inputs=(str(sample),), vocab_size=512, near_dedup=False)
    manifest = run_build(config, RunOptions(output=str(tmp_path / "build"), quiet=True))["manifest"]
    overrides = manifest["recipe"]["train_overrides"]
    assert overrides["lr_decay_style"] == "cosine"

    # The tiny preset's model and recipe, shortened to 30 iterations.
    tiny = resolve_config("tiny", overrides, {"train_samples": 16 * 30, "lr_warmup_samples": 16 * 5})
    with one_torch_thread():
        train(tiny, str(tmp_path / "build"), tmp_path / "run", echo=lambda line: None)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
