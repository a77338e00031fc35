"""The async runner: keeps every endpoint busy, rotates models, retries within a budget.

- Rotation: prompt p's slot k goes to pool[(p // swap_interval + k) % len(pool)], so each prompt is
  asked of distinct models, the active model changes every swap_interval prompts, and a rerun sends
  an item to the same model.  A model that is missing (404) leaves the pool; one that fails
  `failures_before_cooldown` times in a row with a model error (a non-retryable one, such as a 400)
  cools down; its items fall back to the next model the prompt has not used yet.  An endpoint's faults
  (connection errors, timeouts, 429, 5xx, cut streams) never count against the model: they set the
  endpoint aside (below).
- Endpoints: at most `concurrency` requests in flight per endpoint.  An item takes, among its
  backend's endpoints with a free slot, the one expected to answer first: never-measured endpoints
  first (so a new one is measured at once), then the lowest running average (EWMA) of successful
  calls' latency; when no slot is free it waits for whichever endpoint frees one first.  So every
  endpoint stays busy and the fast ones serve more calls.  A retryable failure sets an endpoint aside
  for a while (0.5 s doubling per failure in a row, at most `cooldown_s`, or its Retry-After) while
  another endpoint is up; the item then retries there at once, and the failure does not count
  against the model.  When the pause is over the waiting items are woken and the endpoint is ranked
  like the others again; while an endpoint without failures is up, it takes one trial call at a time,
  and its first success puts it back in full use.  A changed models.yaml is re-read during the run:
  endpoints added to a backend's list join (with workers for their slots), removed ones take no new
  calls; a version that cannot be used (invalid, or read half-written) is logged as a warning naming
  the file and key, and the current lists stay until the file changes again.
- Retries: only for timeouts, 408, 429, 5xx, cut streams and invalid JSON, after Retry-After when
  the server sends it, else exponential backoff with full jitter; every call of an item (retries and
  fallbacks together) counts against `max_attempts`, so fallbacks never multiply calls.
- Budget (`--max-cost`, `--max-tokens-total`, language/usage.py): before each call (an answer's or the
  judge model's) the most that call may use is held; when it could cross the run's budget, no new call
  is issued (by any worker), the calls in flight finish and are recorded, and the items not asked (or
  whose answer the judge could not be asked about) stay unfinished (not failed), so a later run
  completes them.  Why the run stopped is kept in the ledger's meta ("budget_stop").
- Results: answers (and failures) wait in arrival order and are judged (filters, dedup) and recorded in
  batches, every JUDGE_EVERY outcomes or JUDGE_EVERY_S after the oldest, which keeps that CPU work
  cache-warm; an item is finished only once its result is committed to the ledger, so a crash asks the
  waiting ones again.  With a judge model configured (models.yaml `judge:`, language/judge.py), an
  answer the filters accepted is recorded once the judge has scored it (so judged answers are recorded
  in the order their scores arrive); without one, no judge request is made.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import random
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from .backends import Backend, BackendError, Request, build_backend
from .domain import MAX_FILE_BYTES
from .errors import ConfigError
from .items import WorkItem
from .ledger import Ledger, Result, _now
from .grounding import grounding_check
from .judge import JudgeCall, JudgeModel
from .quality import DuplicateIndex, check, clean, reason_kind
from .verify import ANSWER_SCHEMA, ANSWER_SCHEMA_NAME, parse_answer
from .settings import Settings, load_settings
from .usage import Budget, Prices, most_tokens

log = logging.getLogger(__name__)

MAX_WORKERS = 16384      # worker tasks: one per endpoint slot, up to this many (and the open-file limit)
EWMA_ALPHA = 0.3         # weight of the newest successful call in an endpoint's latency average
DOWN_BASE_S = 0.5        # an endpoint's pause after a retryable failure, doubling per failure in a row
RELOAD_EVERY_S = 0.5     # how often models.yaml is checked for changed endpoint lists
JUDGE_EVERY = 32         # answers judged together (filters, dedup, ledger) once this many wait ...
JUDGE_EVERY_S = 0.02     # ... or once the oldest has waited this long


@dataclass
class PoolModel:
    backend: Backend
    model: str
    failures: int = 0
    cool_until: float = 0.0
    missing: bool = False

    @property
    def label(self) -> str:
        return f"{self.backend.name}/{self.model}"


@dataclass
class Endpoint:
    url: str
    slots: int                      # requests in flight at most (the backend's `concurrency`)
    in_flight: int = 0
    latency: float | None = None    # EWMA of successful calls' seconds; None until one succeeds
    failures: int = 0               # retryable failures in a row
    down_until: float = 0.0         # set aside until then (monotonic clock) while another endpoint is up
    retired: bool = False           # dropped from models.yaml during the run: no new calls

    def rank(self, now: float) -> tuple:
        """Lower is better: not set aside, then never measured, then the fastest, then the least busy."""
        return self.down_until > now, self.latency is not None, self.latency or 0.0, self.in_flight / self.slots


class EndpointPool:
    """The endpoints of one backend and a condition that items wait on until any of them frees a slot."""

    def __init__(self, urls, slots: int):
        self.slots, self.endpoints = slots, []
        self.freed = asyncio.Condition()
        self.waiting = 0   # items waiting for a slot; newcomers queue behind them
        self._timers: dict[str, asyncio.TimerHandle] = {}   # url -> the wake-up at the end of its pause
        self._wakes: set[asyncio.Task] = set()              # wake-ups running (kept from the collector)
        self.set_urls(urls)

    def set_urls(self, urls) -> None:
        """Adopt an endpoint list: new URLs join, URLs no longer listed finish their calls and take no more."""
        known = {e.url for e in self.endpoints}
        self.endpoints += [Endpoint(u, self.slots) for u in dict.fromkeys(urls) if u not in known]
        for e in self.endpoints:
            e.retired = e.url not in urls

    @property
    def capacity(self) -> int:
        return sum(e.slots for e in self.endpoints if not e.retired)

    def up(self) -> list[Endpoint]:
        now = time.monotonic()
        return [e for e in self.endpoints if not e.retired and e.down_until <= now]

    def _pick(self) -> Endpoint | None:
        now = time.monotonic()
        up = self.up()
        if not up:  # all set aside: use them anyway
            free = [e for e in self.endpoints if not e.retired and e.in_flight < e.slots]
        elif any(e.failures == 0 for e in up):  # one that failed before: a trial call at a time till it succeeds
            free = [e for e in up if e.in_flight < (1 if e.failures else e.slots)]
        else:
            free = [e for e in up if e.in_flight < e.slots]
        return min(free, key=lambda e: e.rank(now), default=None)

    async def acquire(self) -> Endpoint:
        """The best endpoint with a free slot; when there is none, the first one to free a slot."""
        async with self.freed:
            endpoint = None if self.waiting else self._pick()
            if endpoint is None:  # first come, first served: a release wakes the longest waiting item
                self.waiting += 1
                try:
                    while endpoint is None:
                        await self.freed.wait()
                        endpoint = self._pick()
                finally:
                    self.waiting -= 1
                endpoint.in_flight += 1
                if self.waiting and self._pick() is not None:
                    self.freed.notify()  # more than one slot came free (a pause ended, a trial succeeded)
                return endpoint
            endpoint.in_flight += 1
            return endpoint

    async def release(self, endpoint: Endpoint, seconds: float, error: BackendError | None,
                      max_down_s: float) -> None:
        async with self.freed:
            endpoint.in_flight -= 1
            if error is None:
                endpoint.latency = seconds if endpoint.latency is None else \
                    endpoint.latency + EWMA_ALPHA * (seconds - endpoint.latency)
                endpoint.failures, endpoint.down_until = 0, 0.0
            elif error.retryable:  # failures never update the latency: they must not look fast
                endpoint.failures += 1
                pause = error.retry_after if error.retry_after is not None else \
                    min(max_down_s, DOWN_BASE_S * 2 ** min(endpoint.failures - 1, 30))
                endpoint.down_until = time.monotonic() + pause
                self._wake_after(endpoint, pause)
            self.freed.notify()

    def _wake_after(self, endpoint: Endpoint, pause: float) -> None:
        """At the end of the endpoint's pause, wake every waiting item to look again (no release may come)."""
        timer = self._timers.pop(endpoint.url, None)
        if timer is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        self._timers[endpoint.url] = loop.call_later(max(0.0, pause), self._pause_over, endpoint)

    def _pause_over(self, endpoint: Endpoint) -> None:
        left = endpoint.down_until - time.monotonic()
        if left > 0:  # the loop's clock ran a hair ahead of ours
            self._wake_after(endpoint, left)
            return
        self._timers.pop(endpoint.url, None)
        task = asyncio.ensure_future(self._wake_all())
        self._wakes.add(task)
        task.add_done_callback(self._wakes.discard)

    async def _wake_all(self) -> None:
        async with self.freed:
            self.freed.notify_all()

    def close(self) -> None:
        """Cancel the pending wake-ups (the run is over)."""
        for timer in self._timers.values():
            timer.cancel()
        for task in self._wakes:
            task.cancel()
        self._timers.clear()


@dataclass
class RunStats:
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    calls: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    stopped: str | None = None    # why the budget stopped the run, if it did
    judge_failures: int = 0       # accepted answers the judge model failed to score (kept unjudged unless required)
    judge_calls: int = 0          # calls to the judge model (their tokens and cost are in the totals above)


class Runner:
    def __init__(self, settings: Settings, backends: list[Backend], ledger: Ledger, dedup: DuplicateIndex,
                 *, session_id: str, generation_batch: int, progress=None, vocabulary=None,
                 budget: Budget | None = None):
        self.settings, self.ledger, self.dedup = settings, ledger, dedup
        self.session_id, self.batch, self.progress = session_id, generation_batch, progress
        self.pool = [PoolModel(b, m) for b in backends for m in b.spec.models]
        self.pools: dict[str, EndpointPool] = {}   # backend name -> its endpoints (built in run())
        self.stats = RunStats()
        self._workers: list[asyncio.Task] = []
        self.used: dict[str, set[str]] = {}   # prompt_id -> models asked so far
        self.backends = backends
        self.budget = budget
        self.prices = Prices.of_settings(settings, [b.spec for b in backends])
        self.vocabulary = vocabulary  # for grounded items (language/grounding.py)
        # outcomes waiting for _judge_all, in arrival order: a failed Result, or (item, model, reply,
        # attempts) of an answer to judge
        self._waiting: list[Result | tuple] = []
        self._judge_timer: asyncio.TimerHandle | None = None
        self._judge_error: BaseException | None = None   # raised by a timer's judging: run() re-raises it
        self.judge_model: JudgeModel | None = None     # the optional judge model (built in run() when configured)
        self._scoring: set[asyncio.Task] = set()  # accepted answers waiting for the judge model's scores
        self._client: httpx.AsyncClient | None = None

    async def run(self, items: list[WorkItem]) -> RunStats:
        if not self.pool:
            return self.stats
        self.pools = {b.name: EndpointPool(b.endpoints, b.spec.concurrency) for b in self.backends}
        queue: asyncio.Queue[WorkItem] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)
        # the per-endpoint slots bound the connections; the pool must not (endpoints may join mid-run)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        timeout = httpx.Timeout(self.settings.requests.timeout_s)
        judge_backend = await self._start_judge()
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            self._client = client
            self._add_workers(client, queue)
            watcher = asyncio.create_task(self._reload(client, queue)) if self.settings.path else None
            try:
                while not all(t.done() for t in self._workers):  # a reload may have added workers meanwhile
                    await asyncio.gather(*self._workers)
                self._judge_all()
                while self._scoring:   # the judge model's scores of the last answers
                    await asyncio.gather(*self._scoring)
            except asyncio.CancelledError:
                if self._judge_error is None:
                    raise
            finally:
                for t in [*self._workers, *self._scoring, *([watcher] if watcher else [])]:
                    t.cancel()   # an answer still waiting for its scores is not recorded: a rerun asks again
                for p in self.pools.values():
                    p.close()
                if self._judge_error is None:
                    self._judge_all()   # what still waits (also when interrupted)
                    for t in self._scoring:
                        t.cancel()
                self.stats.stopped = self.budget.stopped if self.budget else None
                self.ledger.set_meta("budget_stop", self.stats.stopped or "")
                self.ledger.commit()
                if judge_backend is not None:
                    await judge_backend.close()
        if self._judge_error is not None:
            raise self._judge_error
        return self.stats

    async def _start_judge(self) -> Backend | None:
        """Build the judge model models.yaml configures (None: no judge); the backend it returns is one
        this runner started and must close (None when the judge uses a backend of the run)."""
        config = self.settings.judge
        if config is None:
            return None
        backend = next((b for b in self.backends if b.name == config.backend), None)
        started = None
        if backend is None:
            spec = next(b for b in self.settings.backends if b.name == config.backend)
            backend = started = build_backend(spec)
            await backend.start()
        r = self.settings.requests
        # a backend of the run: its pool, whose slots and pauses the answers' calls share
        pool = self.pools[backend.name] if started is None else EndpointPool(backend.endpoints, backend.spec.concurrency)
        self.judge_model = JudgeModel(config, backend, pool=pool, max_attempts=r.max_attempts,
                                      backoff_base_s=r.backoff_base_s, backoff_max_s=r.backoff_max_s,
                                      max_down_s=self.settings.rotation.cooldown_s, seed=self.settings.generation.seed)
        return started

    def _add_workers(self, client: httpx.AsyncClient, queue: asyncio.Queue) -> None:
        """One worker per endpoint slot of every backend, at most one per queued item (and at least one)."""
        capacity = min(_worker_limit(), sum(p.capacity for p in self.pools.values()))
        running = sum(not t.done() for t in self._workers)
        wanted = max(1 - running, min(capacity - running, queue.qsize()))
        self._workers += [asyncio.create_task(self._worker(client, queue)) for _ in range(wanted)]

    async def _reload(self, client: httpx.AsyncClient, queue: asyncio.Queue) -> None:
        """Config reload: when models.yaml changes, adopt the endpoint lists of the backends in use.

        A version is the file's inode, mtime, size and bytes, taken just before it is parsed: a read that
        caught the file half-written is followed by another once the rest is written, even within the
        same mtime tick.  A version that cannot be used is logged once as a warning and the current
        lists are kept."""
        path = Path(self.settings.path)
        seen = _version(path)
        while True:
            await asyncio.sleep(RELOAD_EVERY_S)
            now = _version(path)
            if now == seen:
                continue
            seen = now  # taken before the parse: whatever is written after it is another version
            try:
                await self._adopt(path, client, queue)
            except ConfigError as exc:  # invalid or half-written
                log.warning("%s; this version is not adopted, the current endpoints stay", exc)
            except Exception as exc:  # noqa: BLE001 - a bug must not end the watcher unseen
                log.warning("re-reading %s failed: %s: %s; the current endpoints stay", path, type(exc).__name__, exc)

    async def _adopt(self, path: Path, client: httpx.AsyncClient, queue: asyncio.Queue) -> None:
        """Read models.yaml and take over its endpoint lists (ConfigError when it cannot be used)."""
        specs = {b.name: b for b in load_settings(path).backends}
        for backend in self.backends:
            spec = specs.get(backend.name)
            if spec is None or not spec.endpoints or spec.type != backend.spec.type:
                continue  # ad-hoc (--endpoint) or embedded backends have no list there
            pool = self.pools[backend.name]
            async with pool.freed:
                pool.set_urls(spec.endpoints)
                pool.freed.notify_all()
        self._add_workers(client, queue)

    async def _worker(self, client: httpx.AsyncClient, queue: asyncio.Queue) -> None:
        while self.budget is None or self.budget.stopped is None:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            outcome = await self._process(client, item)
            if outcome is not None:  # None: the budget stopped the run before the item's next call
                self._wait_for_judging(outcome)

    def _record(self, result: Result) -> None:
        """An item's final state: into the ledger (finished once its grouped commit is done), the stats
        and the progress bar."""
        self.ledger.record_result(result)
        setattr(self.stats, result.status, getattr(self.stats, result.status) + 1)
        if result.status != "accepted" and result.reason:
            key = reason_kind(result.reason)
            self.stats.reasons[key] = self.stats.reasons.get(key, 0) + 1
        if self.progress:
            self.progress()

    def _wait_for_judging(self, outcome: Result | tuple) -> None:
        """Keep an item's outcome (a failed Result, or an answer to judge) for the next batch; judge the
        batch now when it is full, else within JUDGE_EVERY_S (a timer).

        Judging answers in batches keeps the filters', dedup's and SQLite's code and data in the CPU
        caches: one at a time between two HTTP round trips, the same work cost far more.  Outcomes are
        recorded in arrival order, as before, so dedup sees the answers in the same order and the ledger
        gets the same rows in the same order; one not recorded yet is not finished (a crash asks it
        again, like a result not yet committed)."""
        self._waiting.append(outcome)
        if len(self._waiting) >= JUDGE_EVERY:
            self._judge_all()
        elif self._judge_timer is None:
            self._judge_timer = asyncio.get_running_loop().call_later(JUDGE_EVERY_S, self._judge_due)

    def _judge_due(self) -> None:
        """The timer's judging.  An error (a bug) cannot propagate from a loop callback: it stops the
        workers and run() raises it, as it did when a worker judged."""
        self._judge_timer = None
        try:
            self._judge_all()
        except BaseException:  # noqa: BLE001 - kept in _judge_error, re-raised by run()
            for t in self._workers:
                t.cancel()

    def _judge_all(self) -> None:
        """Judge and record every waiting outcome, oldest first.  An error (a bug) is kept in
        _judge_error, so that run() raises it and does not judge again while it unwinds."""
        if self._judge_timer is not None:
            self._judge_timer.cancel()
            self._judge_timer = None
        waiting, self._waiting = self._waiting, []
        try:
            for outcome in waiting:
                result = outcome if isinstance(outcome, Result) else self._judge(*outcome)
                if result.status == "accepted" and self.judge_model is not None:
                    task = asyncio.ensure_future(self._score(result))
                    self._scoring.add(task)
                    task.add_done_callback(self._scored)
                else:
                    self._record(result)
        except BaseException as exc:
            self._judge_error = exc
            raise

    async def _score(self, result: Result) -> None:
        """An accepted answer's scores from the judge model: recorded with them, or rejected by them.  Each
        judge call is held against the run's budget before it is made, like an answer's call, and goes
        into the ledger's attempts (purpose "judge") and the run's totals; when the budget refuses a call,
        the answer is not recorded (its item stays unfinished, and a later run asks it again)."""
        judge = self.judge_model
        judgement = await judge.score(
            self._client, result.prompt, result.structured or result.response, result.label,
            hold=lambda r: self._hold(judge.backend.name, judge.config.model, system=r.system, prompt=r.prompt,
                                      max_tokens=r.max_tokens),
            done=functools.partial(self._judge_call, result.item_id), release=self._release)
        if judgement is None:
            return
        reason = judge.verdict(judgement)
        self.stats.judge_failures += "error" in judgement
        changes = {"status": "rejected", "reason": reason} if reason is not None else {}
        self._record(dataclasses.replace(result, judge=orjson.dumps(judgement).decode(), **changes))

    def _judge_call(self, item_id: str, call: JudgeCall, held: tuple[int, float]) -> None:
        """A judge call is over: into the ledger's attempts, the run's totals and its budget."""
        judge = self.judge_model
        self.stats.judge_calls += 1
        self._count(judge.backend.name, judge.config.model, prompt_tokens=call.prompt_tokens,
                    completion_tokens=call.completion_tokens, held=held)
        self.ledger.record_attempt(item_id, call.attempt, backend=judge.backend.name, endpoint=call.endpoint,
                                   model=judge.config.model,
                                   outcome=call.outcome, reason=call.reason, http_status=call.http_status,
                                   latency_s=call.latency_s, prompt_tokens=call.prompt_tokens,
                                   completion_tokens=call.completion_tokens, tokens_estimated=call.tokens_estimated,
                                   purpose="judge")

    def _scored(self, task: asyncio.Task) -> None:
        """A scoring task is over; an error in it (a bug) stops the workers and run() raises it."""
        self._scoring.discard(task)
        if not task.cancelled() and task.exception() is not None and self._judge_error is None:
            self._judge_error = task.exception()
            for t in self._workers:
                t.cancel()

    def _choose(self, item: WorkItem) -> PoolModel | None:
        """The item's model: its rotation slot; while that one cools down, a model no other slot of the
        prompt uses; else it waits for its own.  When its own is gone and every model left answers
        another slot of the prompt, None: the item fails (and `retry-failed` asks again once the model
        is back) rather than asking a model for a second answer to the same prompt, which would be a
        duplicate, or two answers of one model where the prompt should have distinct ones."""
        n = len(self.pool)
        base = item.prompt_index // self.settings.rotation.swap_interval
        own = self.pool[(base + item.slot) % n]
        now = time.monotonic()
        if not own.missing and own.cool_until <= now:
            return own
        taken = self.used.get(item.prompt_id, set()) | {
            self.pool[(base + k) % n].label for k in range(self.settings.rotation.models_per_prompt)
            if k != item.slot}
        ranked = [self.pool[(base + item.slot + i) % n] for i in range(1, n)]
        for m in ranked:
            if not m.missing and m.cool_until <= now and m.label not in taken:
                return m
        if not own.missing:
            return own  # cooling down: the caller waits for it
        usable = [m for m in ranked if not m.missing and m.label not in taken]
        return min(usable, key=lambda m: m.cool_until) if usable else None

    def _hold(self, backend: str, model: str, *, system: str, prompt: str, max_tokens: int) -> tuple[int, float] | None:
        """The (tokens, cost) held for a call of `model` (of `backend`) within the run's budget; None when
        that call could cross it (the run then issues no more calls)."""
        if self.budget is None:
            return 0, 0.0
        prompt_tokens, completion_tokens = most_tokens(system, prompt, max_tokens)
        tokens = prompt_tokens + completion_tokens
        cost = self.prices.cost(backend, model, prompt_tokens, completion_tokens)
        return (tokens, cost) if self.budget.hold(tokens, cost) else None

    def _release(self, held: tuple[int, float]) -> None:
        """A held call was not made (cancelled): give its hold back."""
        if self.budget is not None:
            self.budget.settle(*held, 0, 0.0)

    def _count(self, backend: str, model: str, *, prompt_tokens: int, completion_tokens: int,
               held: tuple[int, float]) -> None:
        """A call is over: its tokens and cost into the run's totals and budget (a failed call used none)."""
        cost = self.prices.cost(backend, model, prompt_tokens, completion_tokens)
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        self.stats.cost += cost
        if self.budget is not None:
            self.budget.settle(*held, prompt_tokens + completion_tokens, cost)

    async def _process(self, client: httpx.AsyncClient, item: WorkItem) -> Result | tuple | None:
        """Ask for the item's answer within its call budget: the answer to judge as (item, model, reply,
        attempts), the failed Result, or None when the run's budget stopped it before a call."""
        s = self.settings
        attempts, reason, last_model = 0, "no model available", None
        while attempts < s.requests.max_attempts:
            model = self._choose(item)
            if model is None:
                if any(not m.missing for m in self.pool):
                    reason = "no distinct model left for this prompt (its model is missing)"
                break
            wait = model.cool_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            held = self._hold(model.backend.name, model.model, system=item.system, prompt=item.prompt,
                              max_tokens=item.token_limit(s.generation.max_tokens))
            if held is None:
                return None
            last_model = model
            attempts += 1
            pool = self.pools[model.backend.name]
            request = Request(model.model, item.system, item.prompt, s.generation.temperature,
                              item.token_limit(s.generation.max_tokens), s.generation.seed,
                              {"term": item.term, "category": item.category}, s.generation.repeat_penalty,
                              ANSWER_SCHEMA if item.structured else None, ANSWER_SCHEMA_NAME)
            endpoint = await pool.acquire()
            started = time.monotonic()
            error, reply = None, None
            try:
                self.stats.calls += 1
                reply = await model.backend.generate(client, endpoint.url, request)
            except BackendError as exc:
                error = exc
            except httpx.HTTPError as exc:  # anything the backend did not classify: retry in budget
                error = BackendError(f"HTTP error: {model.backend.redact(str(exc))[:200]}", retryable=True)
            finally:
                latency = time.monotonic() - started
                self._count(model.backend.name, model.model, prompt_tokens=reply.prompt_tokens if reply else 0,
                            completion_tokens=reply.completion_tokens if reply else 0, held=held)
                await pool.release(endpoint, latency, error, s.rotation.cooldown_s)
            if error is None:
                model.failures = 0
                self.used.setdefault(item.prompt_id, set()).add(model.label)
                self.ledger.record_attempt(item.item_id, attempts, backend=model.backend.name, endpoint=endpoint.url,
                                           model=model.model,
                                           outcome="ok", reason=None, http_status=None, latency_s=latency,
                                           prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                                           tokens_estimated=reply.tokens_estimated)
                return item, model, reply, attempts
            reason = error.reason
            self.ledger.record_attempt(item.item_id, attempts, backend=model.backend.name, endpoint=endpoint.url,
                                       model=model.model,
                                       outcome="error", reason=reason, http_status=error.status, latency_s=latency)
            if error.model_missing:
                model.missing = True
                continue
            if not error.retryable:  # the model's error (a request it refuses): it counts against the model
                model.failures += 1
                if model.failures >= s.rotation.failures_before_cooldown:
                    model.cool_until = time.monotonic() + s.rotation.cooldown_s
                    model.failures = 0
                break
            # the endpoint's fault (connection, timeout, 429, 5xx, cut stream): release() set the endpoint
            # aside; the model is not to blame, and its other endpoints (or other backends) go on serving it
            if any(e is not endpoint for e in pool.up()):
                continue  # straight to another endpoint of the backend
            if attempts < s.requests.max_attempts:
                backoff = min(s.requests.backoff_max_s,
                              s.requests.backoff_base_s * 2 ** (attempts - 1)) * random.random()
                await asyncio.sleep(error.retry_after if error.retry_after is not None else backoff)
        return self._result(item, "failed", reason=f"{reason} (after {attempts} calls)", model=last_model, reply=None,
                            attempts=attempts)

    def _judge(self, item: WorkItem, model: PoolModel, reply, attempts: int) -> Result:
        """Filters, grounding and dedup; a structured answer must first be JSON that follows the schema
        (else it is rejected with the reason), then its explanation is the text the filters and the
        dedup read and the export's response."""
        text = clean(reply.text)
        answer = None
        if item.structured:
            answer, reason = parse_answer(text)
            if reason is not None:
                if reply.finish_reason == "length":  # cut JSON: the cut is the cause
                    reason = "truncated at the token limit"
                return self._result(item, "rejected", reason=reason, model=model, reply=reply, attempts=attempts,
                                    text=text)
            text = answer["explanation"].strip()
        reason = check(text, item.prompt, reply.finish_reason, self.settings.quality.min_words)
        if reason is None and item.label and self.vocabulary is not None:
            reason = grounding_check(answer if answer is not None else text, item.label, item.moved, self.vocabulary)
        relevance = None
        if reason is None and not item.label:  # free text: length and relevance (language/quality.py)
            reason = self.dedup.check_free_text(text, item)
            relevance = self.dedup.relevance(text)
        if reason is None:
            reason = self.dedup.find(text)
        if reason is not None:
            return self._result(item, "rejected", reason=reason, model=model, reply=reply, attempts=attempts,
                                text=text, answer=answer, relevance=relevance)
        self.dedup.add(item.item_id, text)
        return self._result(item, "accepted", reason=None, model=model, reply=reply, attempts=attempts, text=text,
                            answer=answer, relevance=relevance)

    def _result(self, item: WorkItem, status: str, *, reason: str | None, model: PoolModel | None, reply,
                attempts: int, text: str | None = None, answer: dict | None = None,
                relevance: tuple[float, str] | None = None) -> Result:
        g = self.settings.generation
        return Result(
            item_id=item.item_id, prompt_id=item.prompt_id, type=item.sample_type, status=status, reason=reason,
            prompt=item.prompt, response=text, model=model.model if model else None,
            model_type=model.backend.type if model else None, backend=model.backend.name if model else None,
            session_id=self.session_id, timestamp=_now(),
            generation_batch=self.batch, term=item.term, category=item.category, seed=g.seed,
            temperature=g.temperature, max_tokens=item.token_limit(g.max_tokens),
            finish_reason=reply.finish_reason if reply else None,
            prompt_tokens=reply.prompt_tokens if reply else 0,
            completion_tokens=reply.completion_tokens if reply else 0,
            attempts=attempts, source_sample_id=item.source_sample_id or None, label=item.label or None,
            structured=orjson.dumps(answer).decode() if answer is not None else None,
            relevance=relevance[0] if relevance else None, relevance_gate=relevance[1] if relevance else None)


def _version(path: Path) -> tuple | None:
    """What tells one version of a config file from the next: inode, mtime, size and (up to the size a
    config may have) its bytes, which a rewrite within one mtime tick changes; None while it is missing."""
    try:
        st = os.stat(path)
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) and st.st_size <= MAX_FILE_BYTES else None
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size, data


def _worker_limit() -> int:
    """Every call in flight holds a socket: stay well below the open-file limit (`ulimit -n`)."""
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # no such limit (Windows)
        return MAX_WORKERS
    return MAX_WORKERS if soft == resource.RLIM_INFINITY else max(1, min(MAX_WORKERS, soft - 256))
