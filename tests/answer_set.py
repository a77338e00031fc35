"""The labelled answer set of the grounded-answer verifier (tests/data/grounded_answers.yaml).

Read by tests/test_verify.py and benchmarks/bench_verifier.py: each case is an answer, the sample it
answers and the decision a sound verifier makes; `score` runs the verifier over all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
import yaml

from language.verify import Sample, verify_answer

ANSWER_SET = Path(__file__).resolve().parent / "data" / "grounded_answers.yaml"


@dataclass(frozen=True)
class Case:
    id: str
    sample: Sample
    text: str            # the answer as a model returns it (JSON text for structured answers)
    structured: bool
    category: str
    accept: bool         # the expected decision
    issue: bool          # one of the cases of issue 16's "Why"
    heldout: bool        # written after the verifier and not used to tune it


def load_cases(path: Path = ANSWER_SET) -> list[Case]:
    data = yaml.safe_load(path.read_text())
    samples = {}
    for name, s in data["samples"].items():
        window = dict(s.get("window") or {})
        times = tuple(window.pop("time", ()))
        samples[name] = Sample(s["label"], {m: float(v) for m, v in s["snapshot"].items()}, s.get("time"), times,
                               {m: tuple(float(x) for x in vs) for m, vs in window.items()},
                               float(s.get("interval_min", 5)), s.get("onset"))
    cases = []
    for a in data["answers"]:
        if "text" in a:
            text, structured = a["text"], False
        elif "raw" in a:
            text, structured = a["raw"], True
        else:
            text, structured = orjson.dumps(a["structured"]).decode(), True
        assert a["expect"] in ("accept", "reject"), a["id"]
        cases.append(Case(a["id"], samples[a["sample"]], text, structured, a["category"], a["expect"] == "accept",
                          bool(a.get("issue")), bool(a.get("heldout"))))
    assert len({c.id for c in cases}) == len(cases), "answer ids repeat"
    return cases


@dataclass(frozen=True)
class Score:
    tp: int
    fp: int
    fn: int
    tn: int
    errors: list[tuple[Case, str | None]]  # (case, the verifier's reasons when it rejected)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def score(cases: list[Case], vocab) -> Score:
    """The verifier's decisions on `cases` against the expected ones (accept = positive)."""
    tp = fp = fn = tn = 0
    errors = []
    for c in cases:
        result = verify_answer(c.text, c.sample, vocab, structured=c.structured)
        tp += result.accepted and c.accept
        fp += result.accepted and not c.accept
        fn += not result.accepted and c.accept
        tn += not result.accepted and not c.accept
        if result.accepted != c.accept:
            errors.append((c, result.reason()))
    return Score(tp, fp, fn, tn, errors)
