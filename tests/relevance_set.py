"""The labelled relevance set (tests/data/relevance_answers.yaml) and a gate's precision and recall on it:
used by tests/test_free_text_gates.py and benchmarks/bench_relevance.py."""

from __future__ import annotations

from pathlib import Path

import yaml

ANSWERS = Path(__file__).parent / "data" / "relevance_answers.yaml"


def labelled() -> list[tuple[str, str, str, bool]]:
    """(term, prompt, answer, relevant) of every labelled answer."""
    data = yaml.safe_load(ANSWERS.read_text())
    return [(t["term"], t["prompt"], a["text"], a["relevant"]) for t in data["terms"] for a in t["answers"]]


def decisions(gate) -> list[tuple[tuple[str, str, str, bool], str | None]]:
    """Each labelled answer with the gate's reason (None: accepted as relevant)."""
    return [(row, gate.check(row[2], row[0], row[1])) for row in labelled()]


def precision_recall(gate) -> tuple[float, float]:
    """The gate's precision and recall on the labelled set (relevant = the positive class)."""
    tp = fp = fn = 0
    for (_, _, _, relevant), reason in decisions(gate):
        accepted = reason is None
        tp += accepted and relevant
        fp += accepted and not relevant
        fn += relevant and not accepted
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1)
