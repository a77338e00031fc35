"""Every number in every explanation is recomputed from the sample's own JSON fields (its snapshot,
context, history and host facts); a number that cannot be is a failure. Written independently of
simulator/explain.py: plain Python per sample, from the exported file."""

from __future__ import annotations

import math
import re
import statistics

import numpy as np
import orjson
import pytest

from simulator.api import generate_samples
from simulator.catalogue import METRICS
from simulator.export import write_metrics_dataset

NUMBER = re.compile(r"\d+(?:\.\d+)?")
COMPARISON = re.compile(r"(\w+) is ([\d.]+)[^,;]*, (up from|down from|the same as) its median of ([\d.]+)"
                        r"[^,;.]* over the previous (\d+) (hours|minutes)")
MIN_HISTORY_HOURS = 6


@pytest.fixture(scope="module")
def run(tmp_path_factory, config):
    result = generate_samples(20000, seed=11, config=config)
    path = tmp_path_factory.mktemp("explain") / "metrics_dataset.json"
    write_metrics_dataset(path, result.metadata, result.samples)
    return result, orjson.loads(path.read_bytes())


@pytest.fixture(scope="module")
def exported(run):
    return run[1]


@pytest.fixture(scope="module")
def allowed(exported):
    """Per sample id, the numbers its explanation may print."""
    minutes_shown = (exported["metadata"]["evidence"]["context_steps"] - 1) * 5
    return {s["id"]: _candidates(s, minutes_shown) for s in exported["training_samples"]}


def _f(v):
    """A value as the simulator holds it: the float32 the JSON's shortest decimal stands for."""
    return None if v is None else float(np.float32(v))


def _usual(sample: dict, m: str) -> tuple[float, int, str]:
    return _usual_and_spread(sample, m)[:3]


def _usual_and_spread(sample: dict, m: str) -> tuple[float, int, str, float]:
    hist = [_f(v) for v in sample["history"][m][:-1] if v is not None]
    values, span, unit = hist, len(hist), "hours"
    if len(hist) < MIN_HISTORY_HOURS:
        values = [_f(v) for v in sample["context"][m][:-1] if v is not None]
        span, unit = len(values) * 5, "minutes"
    if not values:
        return _f(sample["metrics"][m]), 0, "minutes", 0.0
    usual = statistics.median(values)
    spread = statistics.median(abs(v - usual) for v in values)
    ctx = sample["context"][m]
    steps = [abs(_f(b) - _f(a)) for a, b in zip(ctx, ctx[1:]) if a is not None and b is not None]
    if steps:  # at least the reading-to-reading noise
        spread = max(spread, statistics.median(steps) / math.sqrt(2))
    return usual, span, unit, spread


def _off_run(sample: dict, m: str) -> list[int]:
    """Minutes the text may state for how long the metric has been off its usual level."""
    usual, _, _, spread = _usual_and_spread(sample, m)
    now = _f(sample["metrics"][m])
    distance = abs(now - usual)
    if distance == 0 or distance <= 3 * spread:
        return []
    run = 0
    for v in reversed(sample["context"][m]):
        if v is None or abs(_f(v) - usual) <= 0.5 * distance:
            break
        run += 1
    return [(run - 1) * 5] if run else []


def _texts(value: float) -> set[str]:
    out = {str(int(round(value)))}
    for digits in (1, 2, 3):
        out.add(str(round(float(value), digits)))
    return out


def _candidates(sample: dict, minutes_shown: int) -> set[str]:
    """Every number the explanation of this sample may print, from the sample's own fields: the
    snapshot, the first context reading, the host's cores, the minutes the context spans, and for
    each metric the text names, its usual level, that level's span and how long it has been off."""
    out = {str(sample["host"]["cores"]), str(minutes_shown)}
    for m in METRICS:
        out |= _texts(_f(sample["metrics"][m]))
        if sample["context"][m][0] is not None:
            out |= _texts(_f(sample["context"][m][0]))
        if m in sample["explanation"]:
            usual, span, _ = _usual(sample, m)
            out |= _texts(usual) | {str(span)} | {str(x) for x in _off_run(sample, m)}
    return out


def test_every_number_in_every_explanation_comes_from_the_sample(exported, allowed):
    unexplained = []
    for sample in exported["training_samples"]:
        for number in NUMBER.findall(sample["explanation"]):
            if number not in allowed[sample["id"]]:
                unexplained.append((number, sample["id"], sample["explanation"]))
    assert not unexplained, f"{len(unexplained)} numbers not recomputable, e.g. {unexplained[:3]}"


def test_comparisons_say_what_the_numbers_say(exported):
    checked = 0
    for sample in exported["training_samples"]:
        for metric, now, word, usual, span, unit in COMPARISON.findall(sample["explanation"]):
            now_v, usual_v = float(now), float(usual)
            assert word == ("up from" if now_v > usual_v else "down from" if now_v < usual_v else "the same as"), \
                sample["explanation"]
            expected_usual, expected_span, expected_unit = _usual(sample, metric)
            assert usual in _texts(expected_usual) and int(span) == expected_span and unit == expected_unit
            checked += 1
    assert checked > 5000


def test_no_explanation_uses_the_retired_phrasings(exported):
    """They quoted the trace without the anomaly ("normally") and the event table ("into the episode")."""
    for sample in exported["training_samples"]:
        assert not re.search(r"\b(normally|usually|into the episode|old\.)", sample["explanation"]), sample["explanation"]


def test_articles_fit_the_profile(exported):
    for sample in exported["training_samples"]:
        text = sample["explanation"]
        assert not re.search(r"\ba [aeiou]", text), text
        assert not re.search(r"\ban [b-df-hj-np-tv-z]", text), text


def test_every_kind_and_variant_has_a_text(exported, config):
    seen = {(s["anomaly_type"], s["explanation"].split(":")[0][:12]) for s in exported["training_samples"]}
    kinds = {k for k, _ in seen}
    assert kinds == {None, *[a.kind for a in config.anomalies]}


def test_the_recomputation_catches_what_the_sample_does_not_show(run, allowed):
    """Had a text quoted the event table (the old "rising for 3.5 hours", "25 minutes into the
    spike"), the check would fail: the event's age is none of the numbers the sample supports,
    unless the context happens to show it."""
    result, exported = run
    anomalies = result.samples.filter(result.samples["kind"].is_not_null())
    caught = sum(str(int(row["minutes_since_onset"]) + 5) not in allowed[row["id"]]
                 for row in anomalies.iter_rows(named=True))
    assert caught / len(anomalies) > 0.6


def _pick(*variants):
    import polars as pl

    expr = pl.when(pl.col("variant") == 0).then(variants[0])
    for i, v in enumerate(variants[1:], start=1):
        expr = expr.when(pl.col("variant") == i).then(v)
    return expr.otherwise(variants[0])


def explanation_expr(kinds: list[str], interval_s: float, context_steps: int):
    """The explanations as one expression: every phrasing of every kind computed for every row, the
    row's picked (the reference `explanations` must agree with)."""
    import polars as pl

    from simulator.explain import kind_phrasings, normal_phrasings

    texts = kind_phrasings((context_steps - 1) * interval_s / 60.0)
    expr = pl.when(pl.col("kind").is_null()).then(_pick(*normal_phrasings()))
    for kind in kinds:
        expr = expr.when(pl.col("kind") == kind).then(_pick(*texts[kind]))
    return expr.alias("explanation")


def test_explanations_by_group_equal_the_one_expression(run, config):
    """`explanations` (each phrasing on its own rows) gives the texts of `explanation_expr` (every
    phrasing on every row, picked), also for a kind left out of the list (null) and for variants the
    phrasings lack (the first one)."""
    import polars as pl

    from simulator.explain import evidence_features, explanations

    samples = run[0].samples
    frame = samples.with_columns(**evidence_features(samples, config.simulation.interval_s))
    kinds = [a.kind for a in config.anomalies]
    args = (config.simulation.interval_s, config.simulation.context_steps)
    assert explanations(frame, kinds, *args).equals(samples["explanation"])
    odd = frame.with_columns(variant=pl.when(pl.int_range(pl.len()) % 7 == 0).then(pl.lit(5, pl.Int64))
                             .otherwise(pl.col("variant")))
    fewer = kinds[1:]
    expected = odd.select(explanation_expr(fewer, *args)).to_series()
    got = explanations(odd, fewer, *args)
    assert got.null_count() == (odd["kind"] == kinds[0]).sum() > 0
    assert got.equals(expected)
