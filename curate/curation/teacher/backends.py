"""One interface over the teacher backends: request rows in, response rows out."""

from __future__ import annotations

import ray

from curate.curation.teacher.config import TeacherConfig


def generate(requests: ray.data.Dataset, config: TeacherConfig) -> ray.data.Dataset:
    """Response rows for request rows (see `curate.curation.teacher.requests`), by the configured backend."""
    if config.backend == "openai":
        from curate.curation.teacher.openai_backend import generate_openai

        return generate_openai(requests, config)
    from curate.curation.teacher.vllm_backend import generate_vllm

    return generate_vllm(requests, config)
