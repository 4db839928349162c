"""The stage runner: one folder per stage under OUT/_work, a done marker, resume.

Stage folders are URLs on OUT's filesystem (local, s3://, gs://), so every node of a cluster
writes its part of a stage where the driver later looks for it.

A stage is a small object with its configuration bound (see `Stage`). It writes its output into
`OUT/_work/<stage>/` and returns a typed result, which the runner keeps as a `_DONE.json` marker.
A rerun with `--resume` skips every stage whose marker exists and reads its result back, so a
build killed at any moment finishes without redoing finished stages; a stage killed half-way is
started over from an empty folder. The marker is written atomically, after the output.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, ClassVar, Iterator, Protocol

import fsspec

from curate.curation.errors import UserError
from curate.curation.manifest import canonical_json, read_json, write_json_atomic
from curate.curation.storage import join, reaching
from curate.jobs.failure import note_stage

WORK_DIR = "_work"
DONE = "_DONE.json"
INPUTS = "inputs.json"


class Progress:
    """What a running build shows on stderr: a line per stage (what, how many documents, how fast)
    and, while a stage runs, a tick every TICK_SECONDS; JSON lines instead with `as_json`, nothing
    when quiet. On a terminal, Ray Data's own progress bars show each operator's rows as they go."""

    TICK_SECONDS = 10.0

    def __init__(self, quiet: bool, as_json: bool = False):
        self.quiet = quiet
        self.as_json = as_json

    def line(self, text: str) -> None:
        if not self.quiet and not self.as_json:
            print(text, file=sys.stderr, flush=True)

    def event(self, record: dict) -> None:
        if self.as_json:
            print(json.dumps(record, sort_keys=True), file=sys.stderr, flush=True)

    @contextmanager
    def ticking(self, name: str) -> Iterator[None]:
        """Report the running stage every TICK_SECONDS until it ends."""
        done = threading.Event()
        started = time.perf_counter()

        def tick() -> None:
            while not done.wait(self.TICK_SECONDS):
                elapsed = time.perf_counter() - started
                self.line(f"  {name:<12} running {elapsed:7.0f} s")
                self.event({"stage": name, "state": "running", "seconds": round(elapsed, 1)})

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def stage(self, name: str, info: dict, seconds: float | None) -> None:
        counts = {key: info[key] for key in ("documents", "removed", "bytes") if key in info}
        self.event({"stage": name, "state": "skipped" if seconds is None else "done", "seconds": seconds} | counts)
        parts = [f"  {name:<12}"]
        if "documents" in info:
            parts.append(f"{info['documents']:>10,} docs")
        if "removed" in info:
            parts.append(f"{info['removed']:>8,} removed")
        if "bytes" in info:
            parts.append(f"{info['bytes'] / 1e6:9.1f} MB")
        if seconds is None:
            parts.append("  (done before, skipped)")
        else:
            parts.append(f"{seconds:7.1f} s")
            if info.get("bytes") and seconds > 0:
                parts.append(f"{info['bytes'] / 1e6 / seconds:7.1f} MB/s")
            elif info.get("documents") and seconds > 0:
                parts.append(f"{info['documents'] / seconds:9,.0f} docs/s")
        self.line("  ".join(parts))


class Stage(Protocol):
    """One step of a build: `run(work)` writes under the stage's folder `work` (and OUT) and returns
    an instance of `Result`, a dataclass of JSON values that says what it measured and where its
    output lives."""

    name: ClassVar[str]
    Result: ClassVar[type]

    def run(self, work: str) -> Any: ...


class StageRunner:
    """Runs named stages in OUT/_work with done markers; `timings` keeps wall times (never written to OUT's data)."""

    def __init__(self, out: str, progress: Progress):
        self.fs, _ = fsspec.core.url_to_fs(out)
        self.out = out
        self.work = join(out, WORK_DIR)  # a URL: stages write through OUT's filesystem
        self.progress = progress
        self.timings: dict[str, float] = {}

    def path(self, stage: str) -> str:
        return join(self.work, stage)

    def done(self, stage: str) -> bool:
        return self.fs.exists(join(self.path(stage), DONE))

    def run(self, stage: Stage) -> Any:
        """Run `stage` in its folder unless it is done; return its result (read back when done before)."""
        work = self.path(stage.name)
        if self.done(stage.name):
            info = read_json(work, DONE)
            self.progress.stage(stage.name, info, None)
            return stage.Result(**info)
        if self.fs.exists(work):
            self.fs.rm(work, recursive=True)
        self.fs.makedirs(work, exist_ok=True)
        started = time.perf_counter()
        try:
            with self.progress.ticking(stage.name):
                result = stage.run(work)
        except Exception as error:
            note_stage(error, stage.name, self.out)
            raise
        self.timings[stage.name] = time.perf_counter() - started
        info = asdict(result)
        write_json_atomic(work, DONE, info)
        self.progress.stage(stage.name, info, self.timings[stage.name])
        return result

    def check_config(self, config: dict) -> None:
        """Pin the build's configuration; a resume with another configuration is refused."""
        self.fs.makedirs(self.work, exist_ok=True)
        if self.fs.exists(join(self.work, "config.json")):
            if read_json(self.work, "config.json") != json.loads(canonical_json(config)):
                raise UserError(
                    f"{self.out} was started with another configuration; rerun with the same options or use --overwrite"
                )
        else:
            write_json_atomic(self.work, "config.json", config)

    def check_inputs(self, fingerprints: list[dict]) -> None:
        """Pin the inputs' content tokens; a resume over an input that changed since is refused."""
        if not self.fs.exists(join(self.work, INPUTS)):
            write_json_atomic(self.work, INPUTS, fingerprints)
            return
        before = {item["url"]: item for item in read_json(self.work, INPUTS)}
        now = {item["url"]: item for item in fingerprints}
        for url in sorted(before.keys() | now.keys()):
            if before.get(url) != now.get(url):
                what = "is new" if url not in before else "is gone" if url not in now else "changed"
                raise UserError(
                    f"input {url} {what} since {self.out} was started; rebuild it with --overwrite"
                )

    def remove(self) -> None:
        """Drop the stage scratch of a finished build (its manifest is written: nothing is lost)."""
        self.fs.rm(self.work, recursive=True)


def prepare_output(out: str, resume: bool, overwrite: bool) -> None:
    """Refuse to write into a non-empty OUT unless --resume or --overwrite says what to do."""
    with reaching(out, "output"):  # s3fs answers "no" to exists() on a bucket it cannot reach: makedirs says why
        fs, base = fsspec.core.url_to_fs(out)
        if fs.exists(base) and fs.ls(base):
            if overwrite:
                fs.rm(base, recursive=True)
            elif not resume:
                raise UserError(f"{out} exists and is not empty; use --resume to finish it or --overwrite to replace it")
        fs.makedirs(base, exist_ok=True)

