"""The openai backend: any OpenAI-compatible chat endpoint (`vllm serve`, SGLang, ...).

One Ray actor holds the client and a pool of `concurrency` threads, so at most that many
requests are in flight; the `openai` client retries failed requests with exponential
backoff (`retries`) and gives up on one after `timeout_s`. A request that still fails
becomes an `error` row; an endpoint that answers none of its first DEAD_AFTER requests stops
the build with one line.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import ray

from curate.curation.errors import UserError
from curate.curation.teacher.config import TeacherConfig
from curate.curation.teacher.requests import LIGHT_STAGE_CPUS, RESPONSE_COLUMNS

# Requests without a single answer after which an endpoint counts as dead.
DEAD_AFTER = 16


class ChatCompletions:
    """Answers a batch of request rows through the endpoint, `concurrency` at a time."""

    def __init__(self, config: TeacherConfig):
        import openai

        self.config = config
        self.client = openai.OpenAI(
            base_url=config.endpoint,
            # Local servers take any key; a hosted endpoint reads the usual variable.
            api_key=os.environ.get("OPENAI_API_KEY") or "EMPTY",
            max_retries=config.retries,
            timeout=config.timeout_s,
        )
        self.pool = ThreadPoolExecutor(max_workers=config.concurrency)
        self.answered: int | None = 0

    def request(self, prompt: str, max_tokens: int, seed: int) -> tuple[str, int, bool, str]:
        """(generated text, generated tokens, truncated, error) of one document."""
        extra_body = {"top_k": self.config.top_k, "min_p": self.config.min_p}
        if self.config.structured_output:
            extra_body["structured_outputs"] = {"regex": self.config.structured_output}
        try:
            completion = self.client.chat.completions.create(
                model=self.config.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=self.config.temperature,
                top_p=self.config.top_p,
                max_tokens=max_tokens,
                seed=seed,
                extra_body=extra_body,
            )
            choice = completion.choices[0]
            generated = completion.usage.completion_tokens if completion.usage else 0
            return choice.message.content or "", generated, choice.finish_reason == "length", ""
        except Exception as error:  # every failure of one request is recorded on its row
            return "", 0, False, f"{type(error).__name__}: {error}"

    def check_alive(self, errors: tuple[str, ...]) -> None:
        """An endpoint that has answered none of its first DEAD_AFTER requests is dead: stop the build now.

        The failure budget on the driver sees answers only when a whole block is done; this check
        stops a dead endpoint after seconds, not after a shard of requests.
        """
        if self.answered is None:
            return
        self.answered += len(errors)
        if any(not error for error in errors):
            self.answered = None
        elif self.answered >= DEAD_AFTER:
            raise UserError(f"the teacher endpoint {self.config.endpoint} failed all of its first {self.answered} requests "
                            f"(first error: {errors[0]})")

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts, generated, truncated, errors = zip(
            *self.pool.map(
                self.request,
                batch.column("prompt").to_pylist(),
                batch.column("max_tokens").to_pylist(),
                batch.column("seed").to_pylist(),
            )
        )
        self.check_alive(errors)
        return pa.table(
            {
                "shard": batch.column("shard"),
                "row": batch.column("row"),
                "language": batch.column("language"),
                "generated_text": pa.array(texts, pa.string()),
                "generated_tokens": pa.array(generated, pa.int64()),
                "truncated": pa.array(truncated, pa.bool_()),
                "error": pa.array(errors, pa.string()),
            }
        ).select(RESPONSE_COLUMNS)


def generate_openai(requests: ray.data.Dataset, config: TeacherConfig) -> ray.data.Dataset:
    """Response rows for `requests`, from the endpoint at `config.endpoint`.

    The actor is not restarted: Ray Data's default (restart forever) loops on an actor that dies
    every time, and makes Ray's core worker print a warning of its own on the terminal of every
    build; a resumed build loses only the shards in flight. Ray 2.60 takes `max_restarts` only
    through its deprecated `ray_remote_args`, so that deprecation warning is silenced here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated", category=DeprecationWarning)
        return requests.map_batches(
            ChatCompletions,
            fn_constructor_kwargs={"config": config},
            batch_size=config.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=LIGHT_STAGE_CPUS,
            max_restarts=0,
        )
