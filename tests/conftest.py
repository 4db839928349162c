"""Shared fixtures: one real local Ray for the whole session."""

from __future__ import annotations

import gc
import logging
import os
import socket

import pytest


@pytest.fixture(autouse=True)
def collect_ray_garbage():
    """After each test, collect its garbage: a Ray Data stream stopped by an error keeps its actor
    pool (and the pool's CPUs) alive through reference cycles until the cyclic collector runs, and a
    later test, waiting in Ray for those CPUs, allocates too little to trigger that collector."""
    yield
    gc.collect()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API server on 127.0.0.1 (moto in server mode) for the whole session, with the AWS
    variables in this process's environment, so every Ray node started after it (`ray_local`'s, the
    cluster's) and every `curate` subprocess reaches it; yields a boto3 client."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    yield boto3.client("s3")
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """A real local Ray with two CPUs, started once (about 8 s) and shared by every test; started after
    the S3 server, so its workers reach it."""
    import ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
