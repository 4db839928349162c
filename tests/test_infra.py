"""The cluster manifests parse and their entrypoint is a real `curate` command line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import typer
import yaml

from curate.jobs.cli import app

REPO = Path(__file__).resolve().parents[1]


def parse_curate(command_line: str) -> None:
    """Resolve a `curate ...` command line against the real CLI; raises on unknown commands or options."""
    words = shlex.split(command_line)
    assert words[0] == "curate"
    group = typer.main.get_command(app)
    name, *args = words[1:]
    command = group.commands[name]
    command.make_context(name, args)


def test_rayjob_entrypoint_is_a_real_build_command():
    manifest = yaml.safe_load((REPO / "infra" / "kuberay-rayjob.yaml").read_text())
    assert manifest["kind"] == "RayJob"
    assert manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] >= 1
    entrypoint = manifest["spec"]["entrypoint"]
    assert entrypoint.startswith("curate build ")
    parse_curate(entrypoint)


def test_cluster_config_and_readme_submit_command():
    config = yaml.safe_load((REPO / "infra" / "ray-cluster.yaml").read_text())
    assert config["cluster_name"] == "curate" and config["docker"]["image"]
    readme = (REPO / "README.md").read_text()
    submit = re.search(r"^ray job submit .*? -- (curate build .*)$", readme, re.MULTILINE)
    assert submit, "the README shows the ray job submit command"
    parse_curate(submit.group(1))
