"""The async runner: keeps every endpoint busy, rotates models, retries within a budget.

- Rotation: prompt p's slot k goes to pool[(p // swap_interval + k) % len(pool)], so each prompt is
  asked of distinct models, the active model changes every swap_interval prompts, and a rerun sends
  an item to the same model.  A model that is missing (404) leaves the pool; one that fails
  `failures_before_cooldown` times in a row cools down; its items fall back to the next model the
  prompt has not used yet.
- Endpoints: at most `concurrency` requests in flight per endpoint.  An item takes, among its
  backend's endpoints with a free slot, the one expected to answer first: never-measured endpoints
  first (so a new one is measured at once), then the lowest running average (EWMA) of successful
  calls' latency; when no slot is free it waits for whichever endpoint frees one first.  So every
  endpoint stays busy and the fast ones serve more calls.  A retryable failure sets an endpoint aside
  for a while (0.5 s doubling per failure in a row, at most `cooldown_s`, or its Retry-After) while
  another endpoint is up; the item then retries there at once, and the failure does not count
  against the model.  A changed models.yaml is re-read during the run: endpoints added to a
  backend's list join (with workers for their slots), removed ones take no new calls.
- Retries: only for timeouts, 408, 429, 5xx, cut streams and invalid JSON, after Retry-After when
  the server sends it, else exponential backoff with full jitter; every call of an item (retries and
  fallbacks together) counts against `max_attempts`, so fallbacks never multiply calls.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .backends import Backend, BackendError, Request
from .errors import ConfigError
from .items import WorkItem
from .ledger import Ledger, Result
from .grounding import grounding_check
from .quality import DuplicateIndex, check, clean
from .settings import Settings, load_settings

MAX_WORKERS = 16384      # worker tasks: one per endpoint slot, up to this many (and the open-file limit)
EWMA_ALPHA = 0.3         # weight of the newest successful call in an endpoint's latency average
DOWN_BASE_S = 0.5        # an endpoint's pause after a retryable failure, doubling per failure in a row
RELOAD_EVERY_S = 0.5     # how often models.yaml is checked for changed endpoint lists


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

    def rank(self) -> tuple:
        """Lower is better: not failing, then never measured, then the fastest, then the least busy."""
        return self.failures > 0, self.latency is not None, self.latency or 0.0, self.in_flight / self.slots


class EndpointPool:
    """The endpoints of one backend and a condition that items wait on until any of them frees a slot."""

    def __init__(self, urls, slots: int):
        self.slots, self.endpoints = slots, []
        self.freed = asyncio.Condition()
        self.waiting = 0   # items waiting for a slot; newcomers queue behind them
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
        candidates = self.up() or [e for e in self.endpoints if not e.retired]  # all set aside: use them anyway
        return min((e for e in candidates if e.in_flight < e.slots), key=Endpoint.rank, default=None)

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
            self.freed.notify()


@dataclass
class RunStats:
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    calls: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class Runner:
    def __init__(self, settings: Settings, backends: list[Backend], ledger: Ledger, dedup: DuplicateIndex,
                 session_id: str, generation_batch: int, progress=None, vocabulary=None):
        self.settings, self.ledger, self.dedup = settings, ledger, dedup
        self.session_id, self.batch, self.progress = session_id, generation_batch, progress
        self.pool = [PoolModel(b, m) for b in backends for m in b.spec.models]
        self.pools: dict[str, EndpointPool] = {}   # backend name -> its endpoints (built in run())
        self.stats = RunStats()
        self._workers: list[asyncio.Task] = []
        self.used: dict[str, set[str]] = {}   # prompt_id -> models asked so far
        self.backends = backends
        self.vocabulary = vocabulary  # for grounded items (language/grounding.py)

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
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            self._add_workers(client, queue)
            watcher = asyncio.create_task(self._reload(client, queue)) if self.settings.path else None
            try:
                while not all(t.done() for t in self._workers):  # a reload may have added workers meanwhile
                    await asyncio.gather(*self._workers)
            finally:
                for t in [*self._workers, *([watcher] if watcher else [])]:
                    t.cancel()
                self.ledger.commit()
        return self.stats

    def _add_workers(self, client: httpx.AsyncClient, queue: asyncio.Queue) -> None:
        """One worker per endpoint slot of every backend, at most one per queued item (and at least one)."""
        capacity = min(_worker_limit(), sum(p.capacity for p in self.pools.values()))
        running = sum(not t.done() for t in self._workers)
        wanted = max(1 - running, min(capacity - running, queue.qsize()))
        self._workers += [asyncio.create_task(self._worker(client, queue)) for _ in range(wanted)]

    async def _reload(self, client: httpx.AsyncClient, queue: asyncio.Queue) -> None:
        """Config reload: when models.yaml changes, adopt the endpoint lists of the backends in use."""
        path = Path(self.settings.path)
        seen = _mtime(path)
        while True:
            await asyncio.sleep(RELOAD_EVERY_S)
            if _mtime(path) == seen:
                continue
            seen = _mtime(path)
            try:
                specs = {b.name: b for b in load_settings(path).backends}
            except ConfigError:
                continue  # half-written or invalid: keep the current lists until the next change
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
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            result = await self._process(client, item)
            self.ledger.record_result(result)
            setattr(self.stats, result.status, getattr(self.stats, result.status) + 1)
            if result.status != "accepted" and result.reason:
                key = result.reason.split(":")[0].split(" (")[0]
                self.stats.reasons[key] = self.stats.reasons.get(key, 0) + 1
            if self.progress:
                self.progress()

    def _choose(self, item: WorkItem) -> PoolModel | None:
        """The item's model: its rotation slot; while that one cools down, a model no other slot of the
        prompt uses; else it waits for its own (duplicates only when the pool cannot give distinct models)."""
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
        usable = [m for m in ranked if not m.missing and m.label not in taken] or \
                 [m for m in ranked if not m.missing]
        return min(usable, key=lambda m: m.cool_until) if usable else None

    async def _process(self, client: httpx.AsyncClient, item: WorkItem) -> Result:
        s = self.settings
        attempts, reason, last_model = 0, "no model available", None
        while attempts < s.requests.max_attempts:
            model = self._choose(item)
            if model is None:
                break
            wait = model.cool_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            last_model = model
            attempts += 1
            pool = self.pools[model.backend.name]
            request = Request(model.model, item.system, item.prompt, s.generation.temperature,
                              s.generation.max_tokens, s.generation.seed,
                              {"term": item.term, "category": item.category}, s.generation.repeat_penalty)
            endpoint = await pool.acquire()
            started = time.monotonic()
            error = None
            try:
                self.stats.calls += 1
                reply = await model.backend.generate(client, endpoint.url, request)
            except BackendError as exc:
                error = exc
            except httpx.HTTPError as exc:  # anything the backend did not classify: retry in budget
                error = BackendError(f"HTTP error: {model.backend.redact(str(exc))[:200]}", retryable=True)
            finally:
                latency = time.monotonic() - started
                await pool.release(endpoint, latency, error, s.rotation.cooldown_s)
            if error is None:
                model.failures = 0
                self.used.setdefault(item.prompt_id, set()).add(model.label)
                self.ledger.record_attempt(item.item_id, attempts, model.backend.name, endpoint.url, model.model,
                                           "ok", None, None, latency)
                return self._judge(item, model, reply, attempts)
            reason = error.reason
            self.ledger.record_attempt(item.item_id, attempts, model.backend.name, endpoint.url, model.model,
                                       "error", reason, error.status, latency)
            if error.model_missing:
                model.missing = True
                continue
            if error.retryable and any(e is not endpoint for e in pool.up()):
                continue  # that endpoint's trouble: straight to another one of the backend
            model.failures += 1
            if model.failures >= s.rotation.failures_before_cooldown:
                model.cool_until = time.monotonic() + s.rotation.cooldown_s
                model.failures = 0
            if not error.retryable:
                break
            if attempts < s.requests.max_attempts:
                backoff = min(s.requests.backoff_max_s, s.requests.backoff_base_s * 2 ** (attempts - 1)) * random.random()
                await asyncio.sleep(error.retry_after if error.retry_after is not None else backoff)
        return self._result(item, "failed", f"{reason} (after {attempts} calls)", last_model, None, attempts)

    def _judge(self, item: WorkItem, model: PoolModel, reply, attempts: int) -> Result:
        text = clean(reply.text)
        reason = check(text, item.prompt, reply.finish_reason, self.settings.quality.min_words)
        if reason is None and item.label and self.vocabulary is not None:
            reason = grounding_check(text, item.label, item.moved, self.vocabulary)
        if reason is None:
            reason = self.dedup.find(text)
        if reason is not None:
            return self._result(item, "rejected", reason, model, reply, attempts, text)
        self.dedup.add(item.item_id, text)
        return self._result(item, "accepted", None, model, reply, attempts, text)

    def _result(self, item: WorkItem, status: str, reason: str | None, model: PoolModel | None, reply,
                attempts: int, text: str | None = None) -> Result:
        g = self.settings.generation
        return Result(
            item_id=item.item_id, prompt_id=item.prompt_id, type=item.sample_type, status=status, reason=reason,
            prompt=item.prompt, response=text, model=model.model if model else None,
            model_type=model.backend.type if model else None, backend=model.backend.name if model else None,
            session_id=self.session_id, timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            generation_batch=self.batch, term=item.term, category=item.category, seed=g.seed,
            temperature=g.temperature, max_tokens=g.max_tokens,
            finish_reason=reply.finish_reason if reply else None,
            prompt_tokens=reply.prompt_tokens if reply else 0, completion_tokens=reply.completion_tokens if reply else 0,
            attempts=attempts, source_sample_id=item.source_sample_id or None, label=item.label or None)


def _mtime(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _worker_limit() -> int:
    """Every call in flight holds a socket: stay well below the open-file limit (`ulimit -n`)."""
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # no such limit (Windows)
        return MAX_WORKERS
    return MAX_WORKERS if soft == resource.RLIM_INFINITY else max(1, min(MAX_WORKERS, soft - 256))
