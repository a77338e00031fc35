"""One backend served by many endpoints: load follows measured speed, dead endpoints are avoided, one that
recovers is used again, and an endpoint added between runs (or to models.yaml during a run) takes work,
with exact resume; a models.yaml that cannot be used mid-run is reported and the endpoints stay.

Every server is a real loopback HTTP server on 127.0.0.1 (tests/loopback.py) with its own delay per
request; the call counts come from the servers' own request logs and the ledger's recorded attempts.
Nothing here asserts a duration: only counts and orderings with wide margins.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import yaml

from language import scheduler
from language.__main__ import main
from language.backends import BackendError, build_backend
from language.errors import ConfigError
from language.scheduler import EndpointPool, Runner
from language.settings import load_settings

from conftest import ROOT
from loopback import FaultPlan, LoopbackServer, Rule, deterministic_answer

MODELS = ("alpha", "beta")


def _models_yaml(endpoints, concurrency=1, max_attempts=4, cooldown_s=0.3) -> str:
    """models.yaml with a single enabled backend `farm` (OpenAI wire format) on these endpoints.

    cooldown_s also caps an endpoint's pause after a failure (0.5 s doubling per failure in a row)."""
    models = yaml.safe_load((ROOT / "data_config" / "models.yaml").read_text())
    models["backends"] = {"farm": {"type": "openai", "enabled": True, "models": list(MODELS),
                                   "endpoints": list(endpoints), "concurrency": concurrency}}
    models["requests"].update(timeout_s=5, backoff_base_s=0.01, backoff_max_s=0.05, max_attempts=max_attempts)
    models["rotation"].update(cooldown_s=cooldown_s, failures_before_cooldown=3, swap_interval=3)
    return yaml.safe_dump(models)


def _write_models(config_dir, endpoints, **options):
    (config_dir / "models.yaml").write_text(_models_yaml(endpoints, **options))


@pytest.fixture
def config_dir(tmp_path):
    d = tmp_path / "config"
    shutil.copytree(ROOT / "data_config", d)
    return d


def _generate(tmp_path, config_dir, *extra):
    return main(["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"), "--quiet",
                 *extra])


def _db(tmp_path):
    return sqlite3.connect(tmp_path / "out" / "language_staging" / "ledger.sqlite")


def _results(tmp_path):
    db = _db(tmp_path)
    try:
        return db.execute("SELECT item_id, status, prompt, model FROM results").fetchall()
    finally:
        db.close()


def _attempts_per_endpoint(tmp_path, outcome="ok") -> Counter:
    db = _db(tmp_path)
    try:
        return Counter(e for (e,) in db.execute("SELECT endpoint FROM attempts WHERE outcome = ?", (outcome,)))
    finally:
        db.close()


def _generation_calls(server) -> int:
    return len(server.calls_for("/v1/chat"))


def _refused_url() -> str:
    """A 127.0.0.1 port nothing listens on (bound, then closed): connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ------------------------------------------------------------------------------------ load by speed
def test_load_follows_measured_speed_and_every_endpoint_is_used(tmp_path, config_dir):
    # 30 prompts x 2 models = 60 items on three endpoints, 0 / 20 / 200 ms per request, one slot each
    with LoopbackServer(models=MODELS, delay_s=0.0) as fast, LoopbackServer(models=MODELS, delay_s=0.02) as mid, \
            LoopbackServer(models=MODELS, delay_s=0.2) as slow:
        _write_models(config_dir, [slow.url, mid.url, fast.url])  # the slow one first: order must not matter
        code = _generate(tmp_path, config_dir, "--types", "technical_explanation", "--count", "30")
        calls = {"fast": _generation_calls(fast), "mid": _generation_calls(mid), "slow": _generation_calls(slow)}
    assert code == 0
    rows = _results(tmp_path)
    assert len(rows) == 60 and {r[1] for r in rows} == {"accepted"}
    assert sum(calls.values()) == 60                      # no retries were needed: one call per item
    assert min(calls.values()) >= 1, calls                # every endpoint was tried (and measured)
    assert calls["fast"] >= 3 * calls["slow"], calls      # wide margins: 10x and 10x apart in speed
    assert calls["mid"] >= 2 * calls["slow"], calls
    assert calls["fast"] >= calls["mid"], calls
    recorded = _attempts_per_endpoint(tmp_path)           # the ledger saw the same split
    assert recorded == Counter({fast.url: calls["fast"], mid.url: calls["mid"], slow.url: calls["slow"]})
    print("calls per endpoint:", calls)


def test_a_long_endpoint_list_is_used_end_to_end(tmp_path, config_dir):
    # 16 endpoints x 2 slots: 32 workers; 48 prompts x 2 models = 96 items, about 6 per endpoint
    servers = [LoopbackServer(models=MODELS, delay_s=0.05).start() for _ in range(16)]
    try:
        _write_models(config_dir, [s.url for s in servers], concurrency=2)
        code = _generate(tmp_path, config_dir, "--types", "conversation", "--count", "48")
        calls = [_generation_calls(s) for s in servers]
    finally:
        for s in servers:
            s.stop()
    assert code == 0 and len(_results(tmp_path)) == 96
    assert sum(calls) == 96 and min(calls) >= 3, calls
    print("calls per endpoint:", calls)


def test_items_waiting_for_a_busy_backend_take_whichever_endpoint_frees_first(tmp_path, config_dir):
    # Two backends: `farm` (a slow and a fast endpoint, one slot each) and `side` (one endpoint, 6 slots).
    # 8 workers share the work, so several items of farm wait for a slot at once; they must not queue
    # behind the slow endpoint (listed first) while the fast one frees its slot again and again.
    # "Slow" is not a duration: the slow server holds its answers until the fast one has served every
    # other item of farm (or 60 s have passed, and the test fails), so no wall time enters the counts.
    fast_done = threading.Event()

    def held_answer(model, messages, options):
        fast_done.wait(60)
        return deterministic_answer(model, messages, options)

    with LoopbackServer(models=MODELS) as fast, LoopbackServer(models=MODELS, answer=held_answer) as slow, \
            LoopbackServer(models=MODELS) as side:
        def release_slow_when_fast_is_done():
            _wait_for(lambda: _generation_calls(fast) >= 29, timeout=60, what="fast to serve 29 calls",
                      fail=False)
            fast_done.set()

        _write_models(config_dir, [slow.url, fast.url])
        models = yaml.safe_load((config_dir / "models.yaml").read_text())
        models["backends"]["farm"]["models"] = ["alpha"]
        models["backends"]["side"] = {"type": "openai", "enabled": True, "models": ["beta"],
                                      "endpoints": [side.url], "concurrency": 6}
        models["requests"]["timeout_s"] = 120   # the held call must not time out
        (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
        releaser = threading.Thread(target=release_slow_when_fast_is_done, daemon=True)
        releaser.start()
        try:
            code = _generate(tmp_path, config_dir, "--types", "technical_explanation", "--count", "30")
        finally:
            fast_done.set()
            releaser.join(timeout=5)
        calls = {"fast": _generation_calls(fast), "slow": _generation_calls(slow), "side": _generation_calls(side)}
    assert code == 0
    assert len(_results(tmp_path)) == 60
    # slow (listed first, unmeasured) took the first item; every other one went to fast while it was held
    assert calls == {"fast": 29, "slow": 1, "side": 30}, calls
    print("calls per endpoint:", calls)


# ------------------------------------------------------------------------------------- dead endpoint
def test_an_endpoint_that_refuses_connections_loses_its_items_to_the_others_within_budget(tmp_path, config_dir):
    dead = _refused_url()
    with LoopbackServer(models=MODELS, delay_s=0.02) as a, LoopbackServer(models=MODELS, delay_s=0.02) as b:
        # listed first and never measured: it is tried at once; max_attempts 2 leaves one retry per item.
        # Its pauses double (0.5, 1, 2, 4 s... up to cooldown_s = 60): a trial call after each, so a few in all
        # however long the run takes
        _write_models(config_dir, [dead, a.url, b.url], concurrency=2, max_attempts=2, cooldown_s=60)
        code = _generate(tmp_path, config_dir, "--types", "conversation", "--count", "30")
        calls = {"a": _generation_calls(a), "b": _generation_calls(b)}
    assert code == 0
    rows = _results(tmp_path)
    assert len(rows) == 60 and {r[1] for r in rows} == {"accepted"}
    assert calls["a"] + calls["b"] == 60 and min(calls.values()) >= 10, calls
    errors = _attempts_per_endpoint(tmp_path, "error")
    assert set(errors) == {dead} and errors[dead] >= 1           # it was tried, and only it failed
    assert errors[dead] <= 12, errors                             # then mostly set aside (re-tried now and then)
    assert dead not in _attempts_per_endpoint(tmp_path, "ok")
    db = _db(tmp_path)
    try:
        assert db.execute("SELECT max(attempts) FROM results").fetchone()[0] <= 2
    finally:
        db.close()
    print("calls per endpoint:", calls, "refused:", errors[dead])


def test_an_endpoint_that_answered_503_for_a_while_is_back_in_full_use(tmp_path, config_dir):
    # b answers 503 to its first two calls (both slots at the start), then normally: after its pause
    # (0.3 s here) it takes a trial call, succeeds and shares the work again.  Before, an endpoint that
    # had failed once was ranked last for good and, under full load, never chosen again.
    with LoopbackServer(models=MODELS, delay_s=0.02) as a, \
            LoopbackServer(models=MODELS, delay_s=0.02, faults=FaultPlan([Rule("503", times=2)])) as b:
        _write_models(config_dir, [a.url, b.url], concurrency=2)
        code = _generate(tmp_path, config_dir, "--types", "conversation", "--count", "60")  # 120 items
        outcomes = {"a": Counter(c.outcome for c in a.calls_for("/v1/chat")),
                    "b": Counter(c.outcome for c in b.calls_for("/v1/chat"))}
    assert code == 0
    rows = _results(tmp_path)
    assert len(rows) == 120 and {r[1] for r in rows} == {"accepted"}
    assert outcomes["b"]["503"] == 2 and set(outcomes["a"]) == {"ok"}, outcomes
    assert outcomes["a"]["ok"] + outcomes["b"]["ok"] == 120, outcomes   # each 503 cost one retry, elsewhere
    # a alone serves about 100 calls a second: b is back after ~0.3 s of a 0.7+ s run and takes a good share
    assert outcomes["b"]["ok"] >= 20, outcomes
    print("calls per endpoint:", outcomes)


# ----------------------------------------------------------------- the endpoint pool on its own
# EndpointPool driven directly, as the Runner drives it: acquire, call, release with the outcome.
def _fails(pause_s):
    return BackendError("HTTP 503", retryable=True, status=503, retry_after=pause_s)


def test_pool_an_endpoint_back_from_its_pause_shares_the_load_again():
    # Endpoints A and B with 2 slots each and 4 workers (the Runner's count); B's first two calls fail
    # (a 50 ms pause each).  The review's reproducer (B failing for its first 50 ms) gave A 400, B 2.
    async def scenario():
        pool = EndpointPool(["A", "B"], 2)
        calls, failures_left = Counter(), [2]
        queue = asyncio.Queue()
        for i in range(400):
            queue.put_nowait(i)

        async def worker():
            while not queue.empty():
                queue.get_nowait()
                while True:                       # the Runner's loop for one item: retry elsewhere at once
                    endpoint = await pool.acquire()
                    calls[endpoint.url] += 1
                    await asyncio.sleep(0.01)
                    error = None
                    if endpoint.url == "B" and failures_left[0] > 0:
                        failures_left[0] -= 1
                        error = _fails(0.05)
                    await pool.release(endpoint, 0.01, error, 60.0)
                    if error is None:
                        break

        await asyncio.gather(*[worker() for _ in range(4)])
        return calls

    calls = asyncio.run(scenario())
    assert sum(calls.values()) == 402, calls
    # back after ~0.05 s of a run of at least 1 s: about half of the rest; far from the 2 it got before
    assert calls["B"] >= 100, calls


def test_pool_waiting_items_are_woken_when_a_pause_ends_and_a_trial_success_frees_every_slot():
    # No release comes while A's slots stay held: only the end of B's pause can wake the items waiting.
    async def scenario():
        pool = EndpointPool(["A", "B"], 2)
        held = [await pool.acquire(), await pool.acquire()]           # both unmeasured: A, then the idle B
        assert [e.url for e in held] == ["A", "B"]
        b = held.pop()
        held.append(await pool.acquire())                            # A's second slot (a tie: listed first)
        assert [e.url for e in held] == ["A", "A"]
        await pool.release(b, 0.01, _fails(0.05), 60.0)              # B is set aside for 50 ms
        waiters = [asyncio.ensure_future(pool.acquire()) for _ in range(3)]
        done, _ = await asyncio.wait(waiters, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        assert done, "nothing woke the waiting items when B's pause ended"
        await asyncio.sleep(0.05)
        assert sum(w.done() for w in waiters) == 1, "B took more than one call before its trial succeeded"
        trial = done.pop().result()
        assert trial.url == "B"
        await pool.release(trial, 0.01, None, 60.0)                  # the trial succeeds: B is in full use
        done, pending = await asyncio.wait(waiters, timeout=10)
        assert not pending, "B's second free slot was left unused while an item waited"
        assert sorted(w.result().url for w in waiters) == ["B", "B", "B"]

    asyncio.run(scenario())


# ------------------------------------------------------------------ models.yaml re-read mid-run
@pytest.fixture
def watcher(config_dir, monkeypatch):
    """The Runner's models.yaml watcher on its own, checking every 10 ms, with a count of its reads."""
    monkeypatch.setattr(scheduler, "RELOAD_EVERY_S", 0.01)
    reads = []
    real_load = scheduler.load_settings

    def counting_load(path):
        reads.append(path)
        return real_load(path)

    monkeypatch.setattr(scheduler, "load_settings", counting_load)
    _write_models(config_dir, ["http://127.0.0.1:9/a"])
    settings = load_settings(config_dir / "models.yaml")
    runner = Runner(settings, [build_backend(b) for b in settings.backends], None, None, session_id="test",
                    generation_batch=1)
    runner.pools = {b.name: EndpointPool(b.endpoints, b.spec.concurrency) for b in runner.backends}
    return runner, reads, monkeypatch


def _urls(runner):
    return [e.url for e in runner.pools["farm"].endpoints if not e.retired]


class _Warnings:
    """The warnings the scheduler logged so far."""

    def __init__(self, caplog):
        self.caplog = caplog

    def lines(self) -> list[str]:
        return [r.getMessage() for r in self.caplog.records
                if r.name == "language.scheduler" and r.levelno == logging.WARNING]


async def _until(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g} s for {what}")
        await asyncio.sleep(0.005)


def test_a_models_yaml_read_half_written_is_read_again_when_complete_even_within_one_mtime_tick(
        config_dir, watcher):
    runner, reads, _ = watcher
    path = config_dir / "models.yaml"
    complete = _models_yaml(["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"])
    half = complete[:len(complete) // 2]
    path.write_text(half)
    with pytest.raises(ConfigError):
        load_settings(path)                                  # what the watcher will find first
    tick = os.stat(path).st_mtime_ns + 10**9

    async def scenario():
        task = asyncio.ensure_future(runner._reload(None, asyncio.Queue()))
        await asyncio.sleep(0.05)                            # it has taken the current version as seen
        seen = len(reads)
        path.write_text(half)                                # half written (no await: the watcher sees the end
        os.utime(path, ns=(tick, tick))                      # state only), then ...
        await _until(lambda: len(reads) > seen, "the half-written file to be read")
        path.write_text(complete)                            # ... the rest, within the same mtime tick
        os.utime(path, ns=(tick, tick))
        await _until(lambda: _urls(runner) == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"],
                     "the complete file to be adopted")
        path.write_text(complete.replace("9/b", "9/x"))      # a rewrite of the same size, same tick again
        os.utime(path, ns=(tick, tick))
        await _until(lambda: _urls(runner) == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/x"],
                     "the rewrite of the same size to be adopted")
        task.cancel()

    asyncio.run(scenario())


def test_a_bad_models_yaml_mid_run_is_reported_and_the_endpoints_stay(config_dir, watcher, caplog):
    runner, reads, monkeypatch = watcher
    path = config_dir / "models.yaml"
    bad = yaml.safe_load(_models_yaml(["http://127.0.0.1:9/c"]))
    bad["backends"]["farm"]["concurrency"] = "many"

    stderr = _Warnings(caplog)

    async def scenario():
        task = asyncio.ensure_future(runner._reload(None, asyncio.Queue()))
        await asyncio.sleep(0.05)
        path.write_text(yaml.safe_dump(bad))
        await _until(lambda: stderr.lines(), "a warning about the bad file")
        await asyncio.sleep(0.1)                             # several more checks: one warning per version
        assert _urls(runner) == ["http://127.0.0.1:9/a"]     # the previous endpoints stay
        err = stderr.lines()
        assert len(err) == 1, err
        assert str(path) in err[0] and "backends.farm.concurrency" in err[0], err

        def broken(_path):                                   # anything else must be reported, not lost
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(scheduler, "load_settings", broken)
        _write_models(config_dir, ["http://127.0.0.1:9/d"])
        await _until(lambda: len(stderr.lines()) > 1, "the unexpected error to be reported")
        err = stderr.lines()
        assert len(err) == 2 and "RuntimeError: disk on fire" in err[1] and str(path) in err[1], err
        assert not task.done()                               # and the watcher still runs
        monkeypatch.setattr(scheduler, "load_settings", load_settings)
        _write_models(config_dir, ["http://127.0.0.1:9/good"])
        await _until(lambda: _urls(runner) == ["http://127.0.0.1:9/good"], "the next good version to be adopted")
        assert len(stderr.lines()) == 2
        task.cancel()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- endpoints added later
def _spawn(tmp_path, config_dir, count, types="technical_explanation"):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "language", "generate", "--config-dir", str(config_dir), "--output-dir",
         str(tmp_path / "out"), "--quiet", "--types", types, "--count", str(count)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(predicate, proc=None, timeout=60.0, what="the condition", fail=True) -> bool:
    """Poll until predicate() holds; a timeout or the process ending first fails the test (unless fail=False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        ended = proc is not None and proc.poll() is not None
        if time.monotonic() > deadline or ended:
            if not fail:
                return False
            err = proc.communicate()[1].decode()[-2000:] if ended else ""
            pytest.fail(f"waited {timeout:g} s for {what}" if not ended else
                        f"the generator ended (status {proc.returncode}) before {what}: {err}")
        time.sleep(0.005)
    return True


def _check_complete_without_repeats(tmp_path, n_items, done_before, later_calls):
    rows = _results(tmp_path)
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == n_items                      # no gaps, no duplicates
    assert {r[1] for r in rows} == {"accepted"}
    asked_again = {(c.prompt, c.model) for c in later_calls} & done_before
    assert not asked_again                                           # nothing finished was asked again
    assert len(later_calls) == len({(c.prompt, c.model) for c in later_calls})  # and nothing twice
    samples = json.loads((tmp_path / "out" / "language_dataset.json").read_text())["samples"]
    assert len(samples) == n_items == len({(s["prompt"], s["model"]) for s in samples})


def _committed(tmp_path) -> int:
    """Results a running generator has committed to its ledger so far (0 before the file exists)."""
    try:
        db = sqlite3.connect(f"file:{tmp_path / 'out' / 'language_staging' / 'ledger.sqlite'}?mode=ro", uri=True)
        try:
            return db.execute("SELECT count(*) FROM results").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _done_pairs(tmp_path) -> set:
    db = _db(tmp_path)
    try:
        return {(p, m) for p, m in db.execute("SELECT prompt, model FROM results")}
    finally:
        db.close()


@pytest.mark.parametrize("first_run", ["stopped", "killed"])
def test_an_endpoint_added_between_runs_takes_work_and_resume_is_exact(tmp_path, config_dir, first_run):
    with LoopbackServer(models=MODELS, delay_s=0.05) as old, LoopbackServer(models=MODELS, delay_s=0.05) as new:
        _write_models(config_dir, [old.url], concurrency=2)
        if first_run == "stopped":  # a smaller count: the first 10 of the 30 prompts
            assert _generate(tmp_path, config_dir, "--types", "technical_explanation", "--count", "10") == 0
        else:                       # SIGKILL once 10 results are committed (about 1.5 s of work in all)
            proc = _spawn(tmp_path, config_dir, 30)
            _wait_for(lambda: _committed(tmp_path) >= 10, proc, what="10 committed results")
            proc.kill()
            proc.communicate(timeout=30)
        done_before = _done_pairs(tmp_path)
        first_calls = len(old.calls_for("/v1/chat"))
        assert 10 <= len(done_before) < 60
        _write_models(config_dir, [old.url, new.url], concurrency=2)  # the second endpoint joins
        proc = _spawn(tmp_path, config_dir, 30)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        later = old.calls_for("/v1/chat")[first_calls:] + new.calls_for("/v1/chat")
        new_calls = _generation_calls(new)
    assert new_calls >= 5, new_calls                                  # the added endpoint took a share
    assert len(later) == 60 - len(done_before)                        # one call per item left
    _check_complete_without_repeats(tmp_path, 60, done_before, later)
    print(f"first run {len(done_before)} items; second run: old {len(later) - new_calls}, new {new_calls}")


def test_endpoints_added_to_and_removed_from_models_yaml_during_a_run_are_adopted(tmp_path, config_dir):
    # 80 prompts x 2 models = 160 items at 50 ms per call, one slot per endpoint: several seconds of work.
    # Each reload is seen happen, never assumed from elapsed time: an endpoint that only the new file lists
    # serves a call (a never-measured endpoint is tried at once).
    with LoopbackServer(models=MODELS, delay_s=0.05) as a, LoopbackServer(models=MODELS, delay_s=0.05) as b, \
            LoopbackServer(models=MODELS, delay_s=0.05) as c:
        _write_models(config_dir, [a.url])
        proc = _spawn(tmp_path, config_dir, 80)
        _wait_for(lambda: _generation_calls(a) >= 5, proc, what="5 calls on a")
        _write_models(config_dir, [a.url, b.url])          # reload: b joins the running generator
        _wait_for(lambda: _generation_calls(b) >= 3, proc, what="b to be adopted (3 calls)")
        b_joined = _generation_calls(b)
        _write_models(config_dir, [b.url, c.url])          # reload: c joins, a leaves (its call in flight finishes)
        _wait_for(lambda: _generation_calls(c) >= 1, proc, what="the list [b, c] to be adopted (a call on c)")
        a_at_removal = _generation_calls(a)
        others = _generation_calls(b) + _generation_calls(c)
        _wait_for(lambda: _generation_calls(b) + _generation_calls(c) >= others + 20, proc,
                  what="20 more calls on b and c")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        calls = a.calls_for("/v1/chat") + b.calls_for("/v1/chat") + c.calls_for("/v1/chat")
        final = {"a": _generation_calls(a), "b": _generation_calls(b), "c": _generation_calls(c)}
    assert b_joined >= 3, final                            # the added endpoint served calls mid-run
    assert final["a"] <= a_at_removal + 1, (a_at_removal, final)  # the removed one: at most its call in flight
    assert final["b"] + final["c"] >= others + 20, final
    assert len(calls) == 160
    _check_complete_without_repeats(tmp_path, 160, set(), calls)
    print("calls per endpoint:", final)
