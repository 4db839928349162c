"""Parameter-space diagnostics of checkpoints (the paper's sections 3.3, 4.2 and 5).

Entry points: `curate.diagnostics.diagnose.diagnose(checkpoints, output, base=None)` writes
`matrices.jsonl`, `summary.json` and `report.html`; `curate.diagnostics.diagnose.analyse` returns
the records and summary without writing. The pieces: `checkpoints` (finding safetensors
checkpoints, naming matrices by module and layer), `spectral` (singular values, the
WeightWatcher power-law fit, rank measures), `compare` (change against a base),
`analysis` (whole checkpoints, batched), `summary` (model-level figures, Table 1),
`report` (the HTML page, its charts drawn with `curate.curation.plots`), `watch` (a training run's
one line per checkpoint in `RUN/diagnostics.jsonl`, written while it trains).
"""
