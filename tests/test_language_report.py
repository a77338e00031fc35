"""`python -m language report` and the export's `quality` metadata (issue 16 item 7).

A staging written through the real Ledger API with hand-picked answers gives figures worked out by
hand below (distinct-2, near-duplicate rate, length, verifier agreement, reasons); the export's metadata
carries the same figures; relevance and judge columns (added by other gates) are read when the ledger
has them and shown as "-" when not; a tiny job against a loopback server reports what it exported.
"""

from __future__ import annotations

import io
import json
import sqlite3
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from language.__main__ import main
from language.ledger import Ledger, Result
from language.pipeline import ALL_MODELS, STAGING_NAME, quality_figures
from language.quality import reason_kind

from loopback import LoopbackServer

CONVERSATION, GROUNDED = "conversation", "metrics_explanation"
# (item, type, model, status, reason, response, label)
ANSWERS = (
    # conversation, alpha: bigrams 6 + 7 = 13 within the answers, 9 of them distinct
    ("c1", CONVERSATION, "alpha", "accepted", None, "Disk latency grows when the queue fills", None),
    ("c2", CONVERSATION, "alpha", "accepted", None, "disk latency grows when the cache is cold", None),
    ("c3", CONVERSATION, "alpha", "rejected", "near duplicate of c1", "disk latency grows when the queue fills up", None),
    ("c4", CONVERSATION, "alpha", "rejected", "too short (2 words, minimum 5)", "disk latency", None),
    ("c5", CONVERSATION, "alpha", "failed", "HTTP 500 (after 3 calls)", None, None),
    # conversation, beta: bigrams 7, 5 distinct (words 8, 5 distinct)
    ("c6", CONVERSATION, "beta", "accepted", None, "check the disk, then check the disk again", None),
    ("c7", CONVERSATION, "beta", "rejected", "semantic duplicate of c6 (cosine 0.950)", "look at the disk twice", None),
    ("c8", CONVERSATION, "beta", "rejected", "exact duplicate of c6", "check the disk, then check the disk again", None),
    # grounded, alpha: the verifier judged m1, m2 (its rejection) and m3 (passed it, then a near duplicate)
    ("m1", GROUNDED, "alpha", "accepted", None, "cpu_usage jumped to 97 percent: a cpu spike", "cpu_spike"),
    ("m2", GROUNDED, "alpha", "rejected", "grounding: verdict memory_leak is not the label cpu_spike",
     "memory_leak on this host", "cpu_spike"),
    ("m3", GROUNDED, "alpha", "rejected", "near duplicate of m1", "cpu_usage jumped to 97 percent: a cpu spike!",
     "cpu_spike"),
    ("m4", GROUNDED, "alpha", "rejected", "structured: not JSON (expected value at line 1 column 1)", "{oops",
     "normal"),
    ("m5", GROUNDED, "alpha", "rejected", "too short (1 words, minimum 5)", "fine", "normal"),
)


def result(item_id, sample_type, model, status, reason, response, label) -> Result:
    return Result(item_id=item_id, prompt_id=item_id, type=sample_type, status=status, reason=reason,
                  prompt=f"prompt of {item_id}", response=response, model=model, model_type="chat",
                  backend="openai-0", session_id="s", timestamp="2026-01-01T00:00:00Z", generation_batch=1,
                  term="disk latency", category="storage", seed=1, temperature=0.7, max_tokens=400,
                  finish_reason="stop" if response else None, prompt_tokens=10, completion_tokens=10, attempts=1,
                  source_sample_id="s1" if label else None, label=label)


@pytest.fixture
def staged(tmp_path) -> Path:
    """An output folder whose staging holds ANSWERS, written through the Ledger."""
    ledger = Ledger(tmp_path / STAGING_NAME)
    for row in ANSWERS:
        ledger.record_result(result(*row))
    ledger.flush_shards(force=True)
    ledger.close()
    return tmp_path


def run(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def figures_of(output_dir: Path) -> dict:
    ledger = Ledger(output_dir / STAGING_NAME)
    try:
        return quality_figures(ledger.results_frame())
    finally:
        ledger.close()


def test_reason_kinds_drop_ids_and_figures():
    assert reason_kind("near duplicate of c1") == "near duplicate"
    assert reason_kind("semantic duplicate of c6 (cosine 0.950)") == "semantic duplicate"
    assert reason_kind("too short (2 words, minimum 5)") == "too short"
    assert reason_kind("grounding: verdict x; metric y") == "grounding"
    assert reason_kind("truncated at the token limit") == "truncated at the token limit"


def test_figures_of_known_answers(staged):
    figures = figures_of(staged)
    assert list(figures) == [CONVERSATION, GROUNDED]
    assert list(figures[CONVERSATION]) == ["alpha", "beta", ALL_MODELS]
    alpha, beta, both = (figures[CONVERSATION][m] for m in ("alpha", "beta", ALL_MODELS))
    assert (alpha["answers"], alpha["accepted"], alpha["rejected"], alpha["failed"]) == (4, 2, 2, 1)
    assert alpha["rejected_by_reason"] == {"near duplicate": 1, "too short": 1}
    assert beta["rejected_by_reason"] == {"exact duplicate": 1, "semantic duplicate": 1}
    # distinct word bigrams over all bigrams within each accepted answer (not unigrams, not across answers)
    assert alpha["distinct_2"] == round(9 / 13, 4)
    assert beta["distinct_2"] == round(5 / 7, 4)
    assert both["distinct_2"] == round(14 / 20, 4)
    # near (MinHash) and semantic duplicates over the answers (not the failed items; exact ones apart)
    assert alpha["near_duplicate_rate"] == 0.25
    assert beta["near_duplicate_rate"] == round(1 / 3, 4)
    assert both["near_duplicate_rate"] == round(2 / 7, 4)
    # words of the accepted answers: 7 and 8
    assert alpha["words"] == {"median": 7.5, "p10": pytest.approx(7.1), "p90": pytest.approx(7.9)}
    assert both["words"]["median"] == 8.0
    assert alpha["verifier"] is None and both["verifier"] is None   # free text: no verifier
    assert alpha["relevance"] is None and alpha["judge"] is None    # the ledger has no such columns
    grounded = figures[GROUNDED]["alpha"]
    assert grounded["verifier"] == {"judged": 3, "accepted": 2, "rate": round(2 / 3, 4)}
    assert grounded["rejected_by_reason"] == {"grounding": 1, "near duplicate": 1, "structured": 1, "too short": 1}
    assert grounded["near_duplicate_rate"] == 0.2
    assert figures[GROUNDED][ALL_MODELS] == grounded


def test_report_prints_the_figures(staged):
    code, out, err = run(["report", "--output-dir", staged])
    assert code == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("type"))
    assert "distinct-2" in header and "near-dup" in header and "verifier" in header and "judge" in header
    row = next(line.split() for line in lines if line.split()[:2] == [CONVERSATION, "alpha"])
    assert row[2:] == ["4", "2", "2", "1", "0.692", "0.250", "7.1/7.5/7.9", "-", "-", "-"]
    row = next(line.split() for line in lines if line.split()[:2] == [GROUNDED, "alpha"])
    assert row[2:9] == ["5", "1", "4", "0", "1.000", "0.200", "8/8/8"] and row[9:11] == ["2/3", "(0.667)"]
    reasons = lines[lines.index("rejections by reason:") + 1:]
    assert any(line.split() == [CONVERSATION, "beta", "semantic", "duplicate", "1"] for line in reasons)


def test_report_without_staging(tmp_path):
    code, out, _ = run(["report", "--output-dir", tmp_path])
    assert code == 0 and "nothing generated yet" in out


def test_export_metadata_carries_the_same_figures(staged):
    code, _, err = run(["export", "--output-dir", staged, "--quiet"])
    assert code == 0, err
    meta = json.loads((staged / "language_dataset.json").read_text())["metadata"]
    assert meta["quality"] == figures_of(staged)
    assert meta["quality"][CONVERSATION]["alpha"]["distinct_2"] == round(9 / 13, 4)
    code, _, err = run(["export", "--output-dir", staged, "--quiet", "--only-types", GROUNDED, "--allow-fewer"])
    assert code == 0, err
    meta = json.loads((staged / "language_dataset.json").read_text())["metadata"]
    assert list(meta["quality"]) == [GROUNDED]   # the figures of the exported selection


def test_relevance_and_judge_columns_are_read_when_present(staged):
    """A ledger with the relevance and judge columns (as the gates that write them add them)."""
    db = sqlite3.connect(staged / STAGING_NAME / "ledger.sqlite")
    have = {row[1] for row in db.execute("PRAGMA table_info(results)")}
    for column, kind in (("relevance", "REAL"), ("judge", "TEXT")):
        if column not in have:   # a ledger without the gate that writes it
            db.execute(f"ALTER TABLE results ADD COLUMN {column} {kind}")
    db.executemany("UPDATE results SET relevance = ?, judge = ? WHERE item_id = ?", [
        (0.5, json.dumps({"model": "j/judge", "scores": {"correct": 5, "relevant": 4}}), "c1"),
        (0.7, json.dumps({"model": "j/judge", "scores": {"correct": 2, "relevant": 3}}), "c2"),
        (None, json.dumps({"model": "j/judge", "error": "HTTP 500"}), "c6")])
    db.commit()
    db.close()
    figures = figures_of(staged)
    alpha = figures[CONVERSATION]["alpha"]
    assert alpha["relevance"] == {"unrecorded": {"answers": 2, "mean": 0.6}}   # scores without their gate
    assert alpha["judge"] == {"scored": 2, "mean": {"correct": 3.5, "relevant": 3.5}}
    assert figures[CONVERSATION]["beta"]["judge"] is None and figures[CONVERSATION]["beta"]["relevance"] is None
    code, out, err = run(["report", "--output-dir", staged])
    assert code == 0, err
    row = next(line.split() for line in out.splitlines() if line.split()[:2] == [CONVERSATION, "alpha"])
    assert row[-3:] == ["unrecorded=0.600", "correct=3.50", "relevant=3.50"]


def test_report_of_a_loopback_job(tmp_path):
    """A real run: the report counts what the ledger holds and the export's metadata is the report's."""
    out = tmp_path / "out"
    with LoopbackServer(models=("alpha", "beta")) as server:
        code, _, err = run(["generate", "--output-dir", out, "--quiet", "--endpoint", f"openai={server.url}",
                            "--models", "alpha,beta", "--types", "conversation", "--count", "4"])
    assert code == 0, err
    samples = json.loads((out / "language_dataset.json").read_text())
    figures = figures_of(out)
    assert samples["metadata"]["quality"] == figures
    both = figures[CONVERSATION][ALL_MODELS]
    assert both["accepted"] == len(samples["samples"]) > 0
    assert both["answers"] == both["accepted"] + both["rejected"]
    assert 0 < both["distinct_2"] <= 1
