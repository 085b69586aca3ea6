"""Warm knob changes batched per event-loop round.

A worker under load finds many requests ready at once: at 64 clients on two workers,
each round of its event loop reads up to ~32 of them. Answered one by one, each pays the
engine's fixed costs (a dozen small tensor and array operations on 6,298-item rows, each
costing more than its arithmetic). `Rounds.recommend` instead parks the request's job
and, for the first job of a round, schedules one flush with `call_soon`. The flush runs
after every callback already queued for the round (the other ready requests, each
parsed and validated up to its own `await`), so it takes all of them together:
`Engine.recommend_many`, whose answers are bit for bit what each job gets alone.

Nothing waits for a batch to fill: a request alone in its round is flushed in the same
round, at the cost of one extra callback. Bad input never reaches a batch (ids, knobs
and fields are checked before the job is made: 404 and 422 per request), and a job
that fails inside a batch (none should) is answered alone, so one job's error reaches
only its own request.

Used only from the event loop's thread: the engine calls run synchronously in the
flush, as a warm request did before (well under a millisecond a job). Cold requests,
which encode a user, still go to the thread pool one by one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from app.engine import Engine, Job, Ranked

log = logging.getLogger(__name__)


class Rounds:
    """Batches `recommend` calls made in one event-loop round (module doc)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._jobs: list[Job] = []
        self._waiting: list[asyncio.Future[Ranked]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sizes: deque[int] = deque(maxlen=1024)
        """Sizes of the latest batches run (tests and diagnostics)."""

    async def recommend(self, job: Job) -> Ranked:
        """`Engine.recommend(*job)`, run with the other jobs of this round."""
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[Ranked] = loop.create_future()
        if not self._jobs or self._loop is not loop:     # (a new loop: a new app run)
            self._loop = loop
            loop.call_soon(self._flush)
        self._jobs.append(job)
        self._waiting.append(waiting)
        return await waiting

    def _flush(self) -> None:
        jobs, waiting = self._jobs, self._waiting
        self._jobs, self._waiting = [], []
        if not jobs:
            return
        self.sizes.append(len(jobs))
        answers: list[Ranked] | None = None
        try:
            answers = self.engine.recommend_many(jobs)
            if len(answers) != len(jobs):
                raise RuntimeError(f"{len(answers)} answers to {len(jobs)} jobs")
        except Exception:  # noqa: BLE001 - each job alone: only its own request fails
            log.exception("a batch of %d knob changes failed; answering each alone",
                          len(jobs))
            answers = None
        loop = asyncio.get_running_loop()
        for at, (job, fut) in enumerate(zip(jobs, waiting, strict=True)):
            if fut.done() or fut.get_loop() is not loop:   # its request went away
                continue
            if answers is not None:
                fut.set_result(answers[at])
                continue
            try:
                fut.set_result(self.engine.recommend(*job))
            except Exception as exc:  # noqa: BLE001 - raised in its own request
                fut.set_exception(exc)
