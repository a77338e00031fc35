"""The async runner: keeps every endpoint busy, rotates models, retries within a budget.

- Rotation: prompt p's slot k goes to pool[(p // swap_interval + k) % len(pool)], so each prompt is
  asked of distinct models, the active model changes every swap_interval prompts, and a rerun sends
  an item to the same model.  A model that is missing (404) leaves the pool; one that fails
  `failures_before_cooldown` times in a row cools down; its items fall back to the next model the
  prompt has not used yet.
- Limits: at most `concurrency` requests in flight per endpoint; an item goes to the least busy
  endpoint of its backend.
- Retries: only for timeouts, 408, 429, 5xx, cut streams and invalid JSON, after Retry-After when
  the server sends it, else exponential backoff with full jitter; every call of an item (retries and
  fallbacks together) counts against `max_attempts`, so fallbacks never multiply calls.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import httpx

from .backends import Backend, BackendError, Request
from .items import WorkItem
from .ledger import Ledger, Result
from .grounding import grounding_check
from .quality import DuplicateIndex, check, clean
from .settings import Settings

MAX_WORKERS = 1024


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
    limit: asyncio.Semaphore
    in_flight: int = 0


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
        self.endpoints: dict[str, list[Endpoint]] = {}
        self.stats = RunStats()
        self.used: dict[str, set[str]] = {}   # prompt_id -> models asked so far
        self.backends = backends
        self.vocabulary = vocabulary  # for grounded items (language/grounding.py)

    def _endpoints_of(self, backend: Backend) -> list[Endpoint]:
        if backend.name not in self.endpoints:
            self.endpoints[backend.name] = [Endpoint(u, asyncio.Semaphore(backend.spec.concurrency))
                                            for u in backend.endpoints]
        return self.endpoints[backend.name]

    async def run(self, items: list[WorkItem]) -> RunStats:
        if not self.pool:
            return self.stats
        capacity = sum(len(b.endpoints) * b.spec.concurrency for b in self.backends)
        workers = max(1, min(MAX_WORKERS, capacity, len(items)))
        queue: asyncio.Queue[WorkItem] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)
        limits = httpx.Limits(max_connections=capacity + 8, max_keepalive_connections=capacity + 8)
        timeout = httpx.Timeout(self.settings.requests.timeout_s)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            tasks = [asyncio.create_task(self._worker(client, queue)) for _ in range(workers)]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()
                self.ledger.commit()
        return self.stats

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
            endpoint = min(self._endpoints_of(model.backend), key=lambda e: e.in_flight)
            request = Request(model.model, item.system, item.prompt, s.generation.temperature,
                              s.generation.max_tokens, s.generation.seed,
                              {"term": item.term, "category": item.category}, s.generation.repeat_penalty)
            started = time.monotonic()
            async with endpoint.limit:
                endpoint.in_flight += 1
                try:
                    self.stats.calls += 1
                    reply = await model.backend.generate(client, endpoint.url, request)
                    error = None
                except BackendError as exc:
                    error = exc
                except httpx.HTTPError as exc:  # anything the backend did not classify: retry in budget
                    error = BackendError(f"HTTP error: {model.backend.redact(str(exc))[:200]}", retryable=True)
                finally:
                    endpoint.in_flight -= 1
            latency = time.monotonic() - started
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
