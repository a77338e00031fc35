"""The ledger's grouped writes: rows recorded between commits wait in memory and reach SQLite in one
executemany per table at the commit, with the same contents, order and ids as a write per row, and
nothing counts as finished for another reader (a rerun) before its COMMIT."""

from __future__ import annotations

import sqlite3

from language import ledger as ledger_mod
from language.ledger import Ledger, Result


def result(i: int, status: str = "accepted") -> Result:
    return Result(item_id=f"item{i}", prompt_id=f"p{i // 2}", type="conversation", status=status,
                  reason=None if status == "accepted" else "refusal", prompt=f"prompt {i}", response=f"answer {i}",
                  model="a", model_type="openai", backend="openai-0", session_id="s", timestamp="t",
                  generation_batch=1, term="vemkd", category="linux", seed=7, temperature=0.7, max_tokens=64,
                  finish_reason="stop", prompt_tokens=3, completion_tokens=5, attempts=1)


def other_reader(staging) -> sqlite3.Connection:
    return sqlite3.connect(staging / "ledger.sqlite")


def test_rows_are_durable_only_after_the_grouped_commit_and_keep_their_order(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_mod, "COMMIT_EVERY_S", 3600.0)
    monkeypatch.setattr(ledger_mod, "COMMIT_EVERY", 3)
    led = Ledger(tmp_path)
    reader = other_reader(tmp_path)
    for i in range(2):
        led.record_attempt(f"item{i}", 1, backend="openai-0", endpoint="http://x", model="a", outcome="ok",
                           reason=None, http_status=None, latency_s=0.01)
        led.record_result(result(i))
    assert reader.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0   # not committed: a rerun asks again
    led.record_attempt("item2", 1, backend="openai-0", endpoint="http://x", model="a", outcome="error",
                       reason="timeout", http_status=None, latency_s=0.5)
    led.record_attempt("item2", 2, backend="openai-0", endpoint="http://x", model="a", outcome="ok", reason=None,
                       http_status=None, latency_s=0.01)
    led.record_result(result(2, "rejected"))                                     # the 3rd result: COMMIT
    assert [r[0] for r in reader.execute("SELECT item_id FROM results ORDER BY rowid")] == \
        ["item0", "item1", "item2"]
    attempts = reader.execute("SELECT id, item_id, attempt, outcome, reason FROM attempts ORDER BY id").fetchall()
    assert attempts == [(1, "item0", 1, "ok", None), (2, "item1", 1, "ok", None), (3, "item2", 1, "error", "timeout"),
                        (4, "item2", 2, "ok", None)]
    row = reader.execute("SELECT * FROM results WHERE item_id = 'item2'").fetchone()
    names = [d[0] for d in reader.execute("SELECT * FROM results").description]
    assert dict(zip(names, row)) == {**result(2, "rejected").__dict__, "shard": None}
    reader.close()
    led.close()


def test_reads_of_the_same_ledger_see_rows_not_yet_committed(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_mod, "COMMIT_EVERY_S", 3600.0)
    led = Ledger(tmp_path)
    led.record_attempt("item0", 1, backend="openai-0", endpoint="http://x", model="a", outcome="ok", reason=None,
                       http_status=None, latency_s=0.01)
    led.record_result(result(0))
    led.record_result(result(1, "failed"))
    assert led.accepted_texts() == [("item0", "answer 0")]
    assert led.attempts_frame().height == 1
    led.record_result(result(2))
    assert led.finished_ids() == {"item0", "item1", "item2"}
    led.record_result(result(3, "failed"))
    assert led.forget(("failed",)) == 2
    assert led.results_frame()["item_id"].to_list() == ["item0", "item2"]
    assert led.flush_shards(force=True) == 2
    led.close()
    reopened = Ledger(tmp_path)
    assert reopened.samples()["item_id"].to_list() == ["item0", "item2"]
    reopened.close()


def test_timestamps_are_the_utc_second_as_before(tmp_path):
    import time

    before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    now = ledger_mod._now()
    after = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert before <= now <= after and len(now) == 20
