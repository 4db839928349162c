"""The build's stages, one module each, in the order a document passes them.

    ingest -> dedup (exact, near, pairs) -> order (seeded order, phases, phase-1 transform) -> stats

plus `derive` for regimes built from a complete A build and `write`, the shard writer they share.
Each stage function runs inside `curate.jobs.runner.StageRunner`, writes its output under OUT and returns
what it measured (JSON), so a killed build resumes after its last finished stage.
"""
