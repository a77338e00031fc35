"""The runner judges answers in batches: outcomes are recorded in the order the answers (and failures)
arrived, a lone answer is recorded within the judging delay rather than waiting for the next one, and
an error while judging (a bug) still ends the run with that error, whichever path judged."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time

import pytest

from conftest import ROOT
from language import scheduler
from language.backends import Backend, BackendError, Reply
from language.domain import load_domain
from language.items import build_items
from language.ledger import Ledger
from language.quality import DuplicateIndex
from language.scheduler import Runner
from language.settings import BackendSpec, load_settings

ANSWER = ("Check the vemkd daemon on the management host first: its log shows whether the master "
          "election finished, which resource groups were loaded and why a host was closed. Then compare "
          "the slot counts with the plan and restart only the service that failed. Item {i}.")


class ScriptedBackend(Backend):
    """Answers after a per-prompt delay; prompts listed in `fail` fail for good (not retryable)."""

    type = "openai"

    def __init__(self, spec, delays: dict[str, float], fail: set[str]):
        super().__init__(spec)
        self.delays, self.fail, self.arrivals = delays, fail, []

    @property
    def endpoints(self):
        return ("scripted:",)

    async def generate(self, client, endpoint, request):
        await asyncio.sleep(self.delays[request.prompt])
        self.arrivals.append((request.prompt, request.model, time.monotonic()))
        if request.prompt in self.fail:
            raise BackendError("HTTP 400: bad request", retryable=False, status=400)
        n = sum(1 for p, m, _ in self.arrivals if (p, m) == (request.prompt, request.model))
        return Reply(ANSWER.format(i=f"{request.prompt[:30]} {request.model} {n}"), "stop", 5, 50)


def _runner(tmp_path, delays_of, fail_every=0, concurrency=4):
    settings = load_settings(ROOT / "data_config" / "models.yaml")
    settings = dataclasses.replace(settings, path=None)
    items = build_items(load_domain(None), settings, {"conversation": 6}, n_models=2, seed=settings.generation.seed)
    prompts = sorted({it.prompt for it in items})
    delays = {p: delays_of(i) for i, p in enumerate(prompts)}
    fail = {p for i, p in enumerate(prompts) if fail_every and i % fail_every == 1}
    spec = BackendSpec(name="scripted", type="openai", enabled=True, models=("alpha", "beta"),
                       concurrency=concurrency)
    backend = ScriptedBackend(spec, delays, fail)
    ledger = Ledger(tmp_path / "staging")
    progress = []
    runner = Runner(settings, [backend], ledger, DuplicateIndex(0.9), session_id="s", generation_batch=1,
                    progress=lambda: progress.append(time.monotonic()))
    return runner, backend, ledger, items, progress


def test_outcomes_are_recorded_in_arrival_order(tmp_path):
    runner, backend, ledger, items, _ = _runner(tmp_path, lambda i: 0.002 * ((i * 7) % 5), fail_every=3)
    stats = asyncio.run(runner.run(items))
    arrived = [(p, m) for p, m, _ in backend.arrivals]
    rows = ledger.db.execute("SELECT prompt, model, status FROM results ORDER BY rowid").fetchall()
    assert [(p, m) for p, m, _ in rows] == arrived
    assert stats.failed == sum(1 for _, _, s in rows if s == "failed") > 0
    assert stats.accepted == sum(1 for _, _, s in rows if s == "accepted") > 0
    ledger.close()


def test_a_lone_answer_is_recorded_without_waiting_for_the_next(tmp_path):
    # the first prompt's answers come at once, the others a second later
    runner, backend, ledger, items, progress = _runner(tmp_path, lambda i: 0.0 if i == 0 else 1.0)
    asyncio.run(runner.run(items))
    last_arrival = max(t for _, _, t in backend.arrivals)
    assert len(progress) == len(items)
    assert progress[0] < last_arrival - 0.5
    ledger.close()


@pytest.mark.parametrize("judge_every", [1, 1000])   # judged by the worker (batch full) or by the timer
def test_an_error_while_judging_ends_the_run_with_that_error(tmp_path, monkeypatch, judge_every):
    monkeypatch.setattr(scheduler, "JUDGE_EVERY", judge_every)
    runner, _, ledger, items, _ = _runner(tmp_path, lambda i: 0.0 if i == 0 else 0.2)  # a timer judges the first

    judge, calls = runner._judge, []

    def broken(*args):  # the first judgement fails, the others work: the run must still end with it
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("a bug in a filter")
        return judge(*args)

    monkeypatch.setattr(runner, "_judge", broken)
    with pytest.raises(RuntimeError, match="a bug in a filter"):
        asyncio.run(runner.run(items))
    ledger.close()


def test_a_judge_that_always_fails_ends_the_run_with_its_first_error(tmp_path, monkeypatch):
    """Judged by a worker (full batch): the run unwinds without judging again, so the first error is the one
    raised, and what the ledger held is still committed."""
    monkeypatch.setattr(scheduler, "JUDGE_EVERY", 1)
    runner, _, ledger, items, _ = _runner(tmp_path, lambda i: 0.0)
    calls = []

    def broken(*args):
        calls.append(args)
        raise RuntimeError(f"a bug in a filter, call {len(calls)}")

    monkeypatch.setattr(runner, "_judge", broken)
    with pytest.raises(RuntimeError, match=r"call 1$"):
        asyncio.run(runner.run(items))
    # the paid calls' attempt rows were committed: another connection (committed data only) sees them
    other = sqlite3.connect(tmp_path / "staging" / "ledger.sqlite")
    try:
        assert other.execute("SELECT COUNT(*) FROM attempts WHERE outcome = 'ok'").fetchone()[0] >= 1
    finally:
        other.close()
    ledger.close()
