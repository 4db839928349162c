"""The build's stages, one module each, named for what it does.

Their order is written once, in `curate/jobs/build.py` (`build_from_input` and `derive`). Each
stage is a small frozen dataclass with its configuration bound, run by `curate.jobs.runner.StageRunner`
in its own folder under OUT/_work; it returns a typed result (what it measured, where its output
lives), which the runner keeps so a killed build resumes after its last finished stage.
"""
