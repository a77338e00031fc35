"""The verifier of grounded answers (language/verify.py), measured on a labelled answer set."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import polars as pl
import pytest
import yaml

from answer_set import load_cases, score
from language import verify
from language.__main__ import main
from language.errors import ConfigError
from language.grounding import load_vocabulary, metric_sample_items
from language.domain import load_domain
from language.settings import load_settings
from language.verify import (ANSWER_SCHEMA, NORMAL_RANGES, Sample, moved_metrics, parse_answer, related_kinds,
                             verify_answer, verify_structured, verify_text)
from simulator.__main__ import main as simulator_main
from simulator.anomalies import ANOMALY_KINDS, check_consequences
from simulator.catalogue import METRIC_WORDS

from conftest import ROOT
from loopback import LoopbackServer

VOCAB = load_vocabulary()
CASES = load_cases()
BAR = 0.95


# ------------------------------------------------------------------------------ the answer set
def test_the_answer_set_covers_every_kind_both_forms_and_every_category():
    assert len(CASES) >= 80
    for label in [*ANOMALY_KINDS, "normal"]:
        mine = [c for c in CASES if c.sample.label == label]
        assert {c.structured for c in mine} == {True, False}, label
        assert {c.accept for c in mine} == {True, False}, label
    assert {c.category for c in CASES} >= {"right", "vague", "wrong_kind", "wrong_metric", "wrong_number", "negated",
                                           "related_kind", "echoed", "hedged", "schema"}
    assert sum(c.issue for c in CASES) == 9


def test_precision_and_recall_on_the_answer_set():
    s = score(CASES, VOCAB)
    wrong = [(c.id, reason) for c, reason in s.errors]
    assert s.precision >= BAR and s.recall >= BAR, (s.precision, s.recall, wrong)


@pytest.mark.parametrize("case", [c for c in CASES if c.issue], ids=lambda c: c.id)
def test_the_cases_of_the_issue_get_the_right_decision(case):
    result = verify_answer(case.text, case.sample, VOCAB)
    assert result.accepted == case.accept, result.reasons
    assert result.accepted or result.reasons


def _substring_phrases(text, phrase):  # "healthy" found inside "unhealthy"
    return [(m.start(), m.end()) for m in re.finditer(re.escape(phrase), text)]


@pytest.mark.parametrize("breakage", ["substring matches", "negation without clause scope", "kinds read as metrics",
                                      "no movement check"])
def test_a_broken_verifier_falls_below_the_bar(monkeypatch, breakage):
    """The figures measure something: each of these one-line breakages brings one of them under the bar."""
    if breakage == "substring matches":
        monkeypatch.setattr(verify, "_phrase_spans", _substring_phrases)
    elif breakage == "negation without clause scope":
        monkeypatch.setattr(verify, "_clauses",
                            lambda text: [verify._Clause(verify._normalise(text), False, False, False)])
    elif breakage == "kinds read as metrics":
        original = verify._metric_claims
        monkeypatch.setattr(verify, "_metric_claims", lambda clauses, vocab, spans: original(clauses, vocab, {}))
    else:
        monkeypatch.setattr(verify, "moved_metrics", lambda sample: verify._metric_names())
    s = score(CASES, VOCAB)
    assert min(s.precision, s.recall) < BAR, (breakage, s.precision, s.recall)


# ----------------------------------------------------------------------------- free-text rules
@pytest.mark.parametrize("text, label, moved, ok", [
    ("There is no doubt this is a memory leak: memory is up 30 points.", "memory_leak", ("memory_usage",), True),
    ("This is not a memory leak; memory rose 30 points for other reasons.", "memory_leak", ("memory_usage",), False),
    ("No sign of a memory leak, disk full or GC storm; all healthy.", "normal", (), True),
    ("No memory leak here, but the disk is full: disk at 97%.", "disk_full", ("disk_usage",), True),
    ("The host is unhealthy.", "normal", (), False),
    ("The host is not healthy.", "normal", (), False),
    ("The host is healthy.", "normal", (), True),
    ("Is this a memory leak? Memory is at 93%.", "memory_leak", ("memory_usage",), False),  # a question is no claim
    ("A memory leak. Memory grows.", "memory_leak", ("java_heap_usage",), False),  # memory did not move here
    ("A memory leak: the heap grows.", "memory_leak", ("java_heap_usage",), True),
    ("A memory leak; memory grows and the JVM runs full GCs.", "memory_leak", ("memory_usage",), True),  # related
    ("A GC storm; it began as a memory leak.", "jvm_gc_storm", ("java_gc_time",), False),  # not a consequence
    ("A CPU spike: CPU at 95%. Check the disk and the network first.", "cpu_spike", ("cpu_usage",), True),  # advice
    ("A CPU spike: CPU at 95% while memory is unchanged at 40%.", "cpu_spike", ("cpu_usage",), True),  # contrast
    ("A CPU spike: CPU at 95%.", "cpu_spike", (), False),  # nothing moved in the data: cannot be grounded
])
def test_free_text_rules(text, label, moved, ok):
    result = verify_text(text, label, moved, VOCAB)
    assert result.accepted == ok, result.reasons


def test_every_rejection_says_why():
    for c in CASES:
        result = verify_answer(c.text, c.sample, VOCAB, structured=c.structured)
        assert result.accepted or (result.reasons and all(isinstance(r, str) and r for r in result.reasons)), c.id


# ---------------------------------------------------------------------------- structured answers
def test_the_schema_is_json_schema_and_the_parser_agrees_with_a_reference_validator():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(ANSWER_SCHEMA)
    reference = jsonschema.Draft202012Validator(ANSWER_SCHEMA)
    bodies = [c.text for c in CASES if c.structured]
    good = json.loads(next(c.text for c in CASES if c.id == "cpu-s-right"))
    broken = [{**good, "severity": "severe"}, {k: v for k, v in good.items() if k != "onset"},
              {**good, "evidence": [{"metric": "cpu_usage"}]}, {**good, "evidence": [{"metric": "cpu", "value": 1}]},
              {**good, "anomalous_metrics": "cpu_usage"},
              {**good, "evidence": [{"metric": "cpu_usage", "value": True}]},
              {**good, "explanation": ""}, [good], {**good, "onset": 5}]
    bodies += [json.dumps(b) for b in broken]
    for body in bodies:
        try:
            parsed = json.loads(body)
        except json.JSONDecodeError:
            assert parse_answer(body)[1].startswith("structured: not JSON")
            continue
        answer, problem = parse_answer(body)
        assert (problem is None) == reference.is_valid(parsed), (body, problem)
        assert problem is None or problem.startswith("structured: schema: ")


def test_structured_values_are_checked_against_the_window_at_the_cited_time():
    sample = Sample("cpu_spike", {"cpu_usage": 92.4, "load_average": 14.8, "memory_usage": 41.0}, "10:30",
                    ("10:10", "10:15", "10:20", "10:25", "10:30"),
                    {"cpu_usage": (12.0, 12.4, 11.5, 48.3, 92.4), "load_average": (2.1, 2.2, 2.0, 6.5, 14.8)},
                    onset="10:25")

    def answer(**change):
        base = {"verdict": "cpu_spike", "anomalous_metrics": ["cpu_usage"],
                "evidence": [{"metric": "cpu_usage", "value": 48.3, "time": "10:25"}], "onset": "10:25",
                "severity": "high", "check_first": "top", "explanation": "A CPU spike."}
        return verify_structured({**base, **change}, sample, VOCAB)

    assert answer().accepted
    assert answer(evidence=[{"metric": "cpu_usage", "value": 49.0, "time": "2026-01-05T10:25:00Z"}]).accepted
    assert not answer(evidence=[{"metric": "cpu_usage", "value": 48.3, "time": "10:30"}]).accepted  # wrong time
    assert not answer(evidence=[{"metric": "cpu_usage", "value": 50.0, "time": "10:25"}]).accepted  # > 2 %
    assert not answer(evidence=[{"metric": "cpu_usage", "value": 41.0, "time": "09:00"}]).accepted  # no such time
    assert answer(evidence=[{"metric": "cpu_usage", "values": [12, 48.3, 92.4]}]).accepted
    assert not answer(evidence=[{"metric": "cpu_usage", "values": [92.4, 12]}]).accepted           # wrong order
    assert answer(onset="10:20").accepted and answer(onset="10:30").accepted                        # one step
    assert not answer(onset="10:15").accepted and not answer(onset="10:40").accepted
    assert not answer(anomalous_metrics=["cpu_usage", "memory_usage"]).accepted                     # did not move
    assert not answer(verdict="runaway_process").accepted
    assert not answer(verdict="healthy", anomalous_metrics=[], onset=None, severity="none").accepted
    assert "structured: not JSON" in verify_structured('{"verdict": ', sample, VOCAB).reasons[0]


# ------------------------------------------------------------------------------------ movement
def test_movement_is_measured_on_the_sample():
    flat = (40.0, 40.4, 39.8, 40.1, 40.2, 39.9)
    ramp = (61.0, 66.2, 71.5, 76.8, 82.0, 87.4)
    noisy = (20.0, 35.0, 12.0, 30.0, 18.0, 33.0)
    sample = Sample("memory_leak", {"memory_usage": 93.0, "cpu_usage": 21.0, "load_average": 2.0, "disk_usage": 75.0,
                                    "java_heap_usage": 60.0}, "10:00", tuple(f"09:{m:02d}" for m in range(30, 65, 5)),
                    {"memory_usage": (*ramp, 93.0), "cpu_usage": (*noisy, 21.0), "load_average": (*flat, 2.0),
                     "java_heap_usage": (*flat, 60.0)})
    # a steady ramp moved; noise did not; a drop to 2 from a flat 40 did; disk (no window) is above its range
    assert moved_metrics(sample) == ("memory_usage", "disk_usage", "load_average", "java_heap_usage")
    still = Sample("normal", {"memory_usage": 40.1, "cpu_usage": 25.0}, "10:00", sample.window_times,
                   {"memory_usage": (*flat, 40.1), "cpu_usage": (*noisy, 25.0)})
    assert moved_metrics(still) == ()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    assert simulator_main(["--samples", "1500", "--output-dir", str(out), "--quiet", "--seed", "29"]) == 0
    return out


def test_the_normal_ranges_hold_the_simulators_normal_samples(simulated):
    normal = pl.read_parquet(simulated / "staging" / "samples" / "*.parquet").filter(pl.col("kind").is_null())
    assert len(normal) > 1000
    for metric, (lo, hi) in NORMAL_RANGES.items():
        inside = normal[metric].cast(pl.Float64).is_between(lo, hi).mean()
        assert inside >= 0.97, (metric, inside)


# --------------------------------------------------------------------------------- related kinds
def test_related_kinds_and_names_come_from_the_kind_modules_and_are_checked():
    assert related_kinds()["memory_leak"] == ("jvm_gc_storm",)
    assert VOCAB.kinds["daemon_crash"] == tuple(p.lower() for p in ANOMALY_KINDS["daemon_crash"].names)
    assert VOCAB.metrics["network_latency_ms"] == METRIC_WORDS["network_latency_ms"]
    base = ANOMALY_KINDS["job_backlog"]
    with pytest.raises(ValueError, match="job_backlog: a kind is not its own consequence"):
        dataclasses.replace(base, consequences=("job_backlog",))
    with pytest.raises(ValueError, match="job_backlog: needs names"):
        dataclasses.replace(base, names=())
    with pytest.raises(ValueError, match="job_backlog: needs names"):
        dataclasses.replace(base, explain=None)
    meltdown = dataclasses.replace(base, consequences=("meltdown",))
    with pytest.raises(ValueError, match=r"job_backlog: unknown consequences \['meltdown'\]"):
        check_consequences({**ANOMALY_KINDS, "job_backlog": meltdown})


def test_a_vocabulary_file_that_still_names_kinds_or_metrics_is_rejected(tmp_path):
    d = tmp_path / "config"
    shutil.copytree(ROOT / "data_config", d)
    path = d / "anomaly_vocabulary.yaml"
    shipped = yaml.safe_load(path.read_text())
    for key, names in (("kinds", {"cpu_spike": ["spike"]}), ("metrics", {"cpu_usage": ["cpu"]})):
        path.write_text(yaml.safe_dump({**shipped, key: names}))
        with pytest.raises(ConfigError) as err:
            load_vocabulary(d)
        assert str(err.value).startswith(f"{path}: {key}:"), str(err.value)


# -------------------------------------------------------------- truthful and confused structured models
def test_structured_answers_keep_a_truthful_model_and_drop_a_confused_one(tmp_path, simulated):
    """Two loopback models answer staged prompts in JSON: alpha states the label and the metrics that
    moved, beta calls every sample a memory leak; the run keeps alpha's and drops beta's."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "data_config", config)
    models = yaml.safe_load((config / "models.yaml").read_text())
    models["requests"].update(timeout_s=2, backoff_base_s=0.01, backoff_max_s=0.05)
    (config / "models.yaml").write_text(yaml.safe_dump(models))
    items = metric_sample_items(simulated, 40, load_domain(), models_per_prompt=2, n_models=2,
                                options=load_settings().fingerprint(), seed=20260105)
    truth = {it.prompt: it for it in items}

    def answer(model, messages, options):
        item = truth[messages[-1]["content"]]
        tag = f"sample {item.source_sample_id}"
        if model == "beta":
            body = {"verdict": "memory_leak", "anomalous_metrics": ["memory_usage"], "evidence": [], "onset": None,
                    "severity": "high", "check_first": "a heap dump",
                    "explanation": f"Memory keeps growing on this host: a memory leak that will end in an out of "
                                   f"memory kill unless the service is restarted and its heap examined ({tag})."}
        elif item.label == "normal":
            body = {"verdict": "healthy", "anomalous_metrics": [], "evidence": [], "onset": None, "severity": "none",
                    "check_first": "nothing beyond the routine checks",
                    "explanation": f"Every reading sits in its usual range for this host, so nothing needs "
                                   f"attention beyond the routine checks on the dashboard in the morning ({tag})."}
        else:
            body = {"verdict": item.label, "anomalous_metrics": list(item.moved), "evidence": [], "onset": None,
                    "severity": "high", "check_first": "the host's logs around the change",
                    "explanation": f"The metrics that moved show the incident plainly against the host's usual "
                                   f"level; confirm the cause in the logs and record the change in the ticket ({tag})."}
        return json.dumps(body)

    with LoopbackServer(models=("alpha", "beta"), answer=answer) as server:
        assert main(["generate", "--config-dir", str(config), "--output-dir", str(tmp_path / "out"), "--quiet",
                     "--endpoint", f"openai={server.url}", "--models", "alpha,beta", "--types", "metrics_explanation",
                     "--count", "40", "--from-metrics", str(simulated)]) == 0
    data = json.loads((tmp_path / "out" / "language_dataset.json").read_text())
    # identical answers to normal samples are near-duplicates: the agreement table counts what the
    # grounding check decided (accepted, or refused by it)
    agreement = data["metadata"]["grounding_agreement"]
    ungroundable = sum(1 for it in items if it.label != "normal" and not it.moved) // 2
    leaks = sum(1 for it in items if it.label == "memory_leak") // 2
    assert agreement["alpha"]["checked"] - agreement["alpha"]["agreed"] == ungroundable
    assert agreement["alpha"]["agreed"] >= 2 and agreement["beta"]["agreed"] <= leaks
    assert agreement["beta"]["checked"] >= 40 - leaks and agreement["beta"]["rate"] < 0.5
    assert all(s["label"] == "memory_leak" for s in data["samples"] if s["model"] == "beta")
