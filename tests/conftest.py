"""Shared fixtures: one real local Ray for the whole session."""

from __future__ import annotations

import gc
import os

import pytest


@pytest.fixture(autouse=True)
def collect_ray_garbage():
    """After each test, collect its garbage: a Ray Data stream stopped by an error keeps its actor
    pool (and the pool's CPUs) alive through reference cycles until the cyclic collector runs, and a
    later test, waiting in Ray for those CPUs, allocates too little to trigger that collector."""
    yield
    gc.collect()


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray with two CPUs, started once (about 8 s) and shared by every test."""
    import ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
