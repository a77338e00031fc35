"""Grounded metrics explanations: prompts from simulated samples, answers checked against their labels."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import polars as pl
import pytest
import yaml

from language.__main__ import main
from language.domain import DomainContent, Persona, Style, load_domain
from language.errors import ConfigError, LanguageError
from language.grounding import WINDOW_STEPS, grounding_check, load_vocabulary, metric_sample_items
from language.settings import load_settings
from simulator.__main__ import main as simulator_main

from conftest import FAST_RETRIES, ROOT, language_config
from loopback import LoopbackServer

VOCAB = load_vocabulary()


@pytest.mark.parametrize("text, label, moved, ok", [
    ("A GC storm: the heap sits at 97 % and GC time at 55 %.", "jvm_gc_storm", ("java_heap_usage", "java_gc_time"),
     True),
    ("This is a memory leak; memory keeps growing.", "jvm_gc_storm", ("java_heap_usage",), False),
    ("A GC storm and also a disk full condition.", "jvm_gc_storm", ("java_heap_usage", "java_gc_time"), False),
    ("There was a short spike at noon.", "cpu_spike", ("cpu_usage", "load_average"), False),  # names no metric
    ("All readings are healthy; no sign of a memory leak or disk full.", "normal", (), True),
    ("Healthy overall, but the CPU spike suggests a runaway process.", "normal", (), False),
    ("CPU 35 % and load 2.1.", "normal", (), False),  # never says healthy
    ("vemkd is down: vemkd_process_count dropped to 0 and jobs fell away.", "daemon_crash",
     ("vemkd_process_count", "spectrum_active_jobs"), True),
])
def test_grounding_check(text, label, moved, ok):
    reason = grounding_check(text, label, moved, VOCAB)
    assert (reason is None) == ok, reason


@pytest.fixture(scope="module")
def metrics_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("metrics")
    assert simulator_main(["--samples", "300", "--output-dir", str(out), "--quiet", "--seed", "5"]) == 0
    return out / "metrics_dataset.json"


@pytest.fixture
def config_dir(tmp_path):
    return language_config(tmp_path, requests={"timeout_s": 2, **FAST_RETRIES})


def test_prompts_show_the_sample_and_include_normal_ones(metrics_json):
    items = metric_sample_items(metrics_json, 60, load_domain(), models_per_prompt=1, n_models=1, options="x", seed=3)
    labels = [it.label for it in items]
    assert "normal" in labels and len(set(labels)) >= 3
    samples = {s["id"]: s for s in json.loads(metrics_json.read_text())["training_samples"]}
    for it in items:
        sample = samples[it.source_sample_id]
        assert it.label == (sample["anomaly_type"] if sample["status"] == "anomaly" else "normal")
        assert str(sample["metrics"]["cpu_usage"]) in it.prompt


def _truthful_and_confused(source, seed):
    """A fake pair of models answering in JSON (the schema must arrive with each grounded request):
    alpha explains each sample from its data (the kind and a metric that moved; when nothing moved in
    the data shown, it names no metric), beta always blames a memory leak."""
    items = metric_sample_items(source, 30, load_domain(), models_per_prompt=2, n_models=2,
                                options=load_settings().fingerprint(), seed=seed)
    truth = {it.prompt: it for it in items}

    def answer(model, messages, options):
        assert options["schema"] is not None, "a grounded request without its answer schema"
        item = truth[messages[-1]["content"]]
        tag = f"prompt {abs(hash(item.prompt)) % 10**6}"
        if model == "beta" and item.label != "memory_leak":
            body = {"verdict": "memory_leak", "anomalous_metrics": ["memory_usage"], "severity": "high",
                    "explanation": "This is a memory leak: memory keeps growing on the host and will end in an out "
                                   "of memory kill unless someone restarts the service and looks at the heap dump "
                                   f"soon enough ({tag})."}
        elif item.label == "normal":
            body = {"verdict": "healthy", "anomalous_metrics": [], "severity": "none",
                    "explanation": "The host looks healthy: every reading is within the usual range for this kind "
                                   "of server, so no action is needed now beyond the regular checks on the "
                                   f"dashboard tomorrow morning ({tag})."}
        else:
            phrase = VOCAB.kinds[item.label][0]
            metrics = list(item.moved[:1])  # none when the data shows nothing: the label cannot be grounded
            body = {"verdict": item.label, "anomalous_metrics": metrics, "severity": "high",
                    "explanation": f"This is a {phrase}. The readings shown make it plain against the host's usual "
                                   "level; check the service logs from the start of the window, confirm the cause, "
                                   f"and record what you changed in the incident ticket ({tag})."}
        return json.dumps({"evidence": [], "onset": None, "check_first": "the service logs", **body})
    return items, answer


def test_wrong_kinds_are_rejected_and_samples_join_back(tmp_path, config_dir, metrics_json):
    items, answer = _truthful_and_confused(metrics_json, seed=20260105)
    with LoopbackServer(models=("alpha", "beta"), answer=answer) as server:
        args = ["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"), "--quiet",
                "--endpoint", f"openai={server.url}", "--models", "alpha,beta", "--types", "metrics_explanation",
                "--count", "30", "--from-metrics", str(metrics_json)]
        assert main(args) == 0
        calls = len(server.calls_for())
        assert main(args) == 0                       # resume: nothing left to ask
        assert len(server.calls_for()) == calls == 60
    data = json.loads((tmp_path / "out" / "language_dataset.json").read_text())
    samples = data["samples"]
    source = {s["id"]: s for s in json.loads(metrics_json.read_text())["training_samples"]}
    assert samples and all(s["model"] == "alpha" or s["label"] == "memory_leak" for s in samples)
    for s in samples:
        truth = source[s["source_sample_id"]]
        assert s["label"] == (truth["anomaly_type"] if truth["status"] == "anomaly" else "normal")
    _truthful_kept_confused_dropped(items, samples, data["metadata"]["grounding_agreement"])
    chat = [json.loads(line) for line in (tmp_path / "out" / "language_dataset.chat.jsonl").read_text().splitlines()]
    assert all(c["source_sample_id"] in source for c in chat)


def test_a_broken_metrics_file_is_a_one_line_error(tmp_path, config_dir, capsys):
    bad = tmp_path / "metrics.json"
    bad.write_text('{"training_samples": [{"id": 1}]}')
    code = main(["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"),
                 "--endpoint", "openai=http://127.0.0.1:9", "--models", "a", "--types", "metrics_explanation",
                 "--count", "2", "--from-metrics", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "training_samples[0]" in err and err.count("\n") == 1


@pytest.mark.embedded
def test_grounded_prompts_run_on_the_embedded_model(tmp_path, metrics_json):
    import sqlite3
    import subprocess
    import sys

    pytest.importorskip("xllamacpp")
    proc = subprocess.run([sys.executable, "-m", "language", "generate", "--types", "metrics_explanation",
                           "--count", "2", "--from-metrics", str(metrics_json), "--output-dir", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 3), proc.stderr[-2000:]
    db = sqlite3.connect(tmp_path / "out" / "language_staging" / "ledger.sqlite")
    rows = db.execute("SELECT status, reason, label, source_sample_id FROM results").fetchall()
    db.close()
    assert len(rows) == 2 and all(r[2] and r[3] for r in rows)
    # a 135M model often gets it wrong: then the reason says why
    assert all(r[0] == "accepted" or r[1] for r in rows)


# ------------------------------------------------------------------ prompts from the simulator's staging
def test_json_sourced_item_ids_do_not_change(tmp_path):
    """Ids of prompts from a metrics JSON are pinned: the same dataset, seed and config give the same ids,
    so a resume finds its finished work. A change of the prompt text or the hash recipe changes them
    (and leaves earlier answers out of a resumed run): change the pins only on purpose."""
    domain = DomainContent("You are a monitoring assistant.", {}, (), (),
                           (Persona("p", "engineer", "Be brief."), Persona("q", "operator", "Be exact.")),
                           (Style("s", "Ask plainly.", "e"),), (), (), (), ())
    samples = [{"id": f"s-{i}", "timestamp": f"2026-01-05T0{i}:00:00Z", "status": "anomaly" if i % 2 else "normal",
                "anomaly_type": "cpu_spike" if i % 2 else None,
                "metrics": {"cpu_usage": 10.5 + i, "memory_usage": 40.0, "load_average": 1.25,
                            "spectrum_active_jobs": 3}} for i in range(4)]
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"metadata": {}, "training_samples": samples}))
    items = metric_sample_items(path, 4, domain, models_per_prompt=2, n_models=2, options="opts", seed=7)
    assert [it.item_id for it in items] == [
        "c32a1c78b31977da96ba", "3d4daff257dc561dc40d", "3b4ca2e4c8a34aba886b", "c6f1211b92e5f3ee3e55",
        "5951f3c940204bda42d5", "12d97000c888c97991d1", "1b5069985848242955cb", "6378dc7333a01a6aad68"]
    assert all("Trend" not in it.prompt and "timechart" not in it.prompt and "| time |" not in it.prompt
               for it in items)


def _window_in(prompt: str) -> tuple[list[str] | None, dict[str, list[str]]]:
    """(times, {metric: values as printed}) of the recent window a prompt shows, in any of the three forms."""
    lines = prompt.splitlines()
    if "| time |" in prompt:
        i = next(k for k, line in enumerate(lines) if line.startswith("| time |"))
        names = [c.strip() for c in lines[i].strip("|").split("|")][1:]
        rows = [[c.strip() for c in line.strip("|").split("|")]
                for line in itertools.takewhile(lambda line: line.startswith("| "), lines[i + 2:])]
        return [r[0] for r in rows], {m: [r[j + 1] for r in rows] for j, m in enumerate(names)}
    if "timechart" in prompt:
        i = next(k for k, line in enumerate(lines) if line.startswith("_time"))
        names = lines[i].split()[1:]
        rows = [line.split() for line in itertools.takewhile(lambda line: line.strip(), lines[i + 1:])]
        return [r[0] for r in rows], {m: [r[j + 1] for r in rows] for j, m in enumerate(names)}
    i = next(k for k, line in enumerate(lines) if line.startswith("Trend over"))
    out = {}
    for line in itertools.takewhile(lambda line: line.startswith("  "), lines[i + 1:]):
        name, values = line.strip().split(": ", 1)
        out[name.split(" ")[0]] = values.split(", ")
    return None, out


def test_staged_prompts_show_the_hosts_window_before_the_sample(metrics_json):
    staging = metrics_json.parent / "staging"
    items = metric_sample_items(staging, 60, load_domain(), models_per_prompt=1, n_models=1, options="x", seed=3)
    samples = pl.read_parquet(staging / "samples" / "*.parquet")
    by_id = {r["id"]: r for r in samples.iter_rows(named=True)}
    traces = pl.read_parquet(staging / "traces" / "*.parquet")  # read whole: the reference
    json_samples = {s["id"]: s for s in json.loads(metrics_json.read_text())["training_samples"]}
    forms = set()
    for it in items:
        sample = by_id[it.source_sample_id]
        assert it.label == (sample["kind"] or "normal")
        host, step = sample["host"], sample["step"]
        assert f"Host cn{host:05d}," in it.prompt or f"host=cn{host:05d} " in it.prompt or f"host cn{host:05d} " in it.prompt
        for m, v in json_samples[it.source_sample_id]["metrics"].items():  # the snapshot, as the JSON has it
            assert any(f"{m}{sep}{v}" in it.prompt for sep in (": ", "=", " | ")), (m, v)
        times, window = _window_in(it.prompt)
        forms.add("alert" if times is None else "table" if "| time |" in it.prompt else "splunk")
        assert len(window) == 3
        expected = traces.filter((pl.col("host") == host) & pl.col("step").is_between(step - WINDOW_STEPS + 1, step)
                                 ).sort("step")
        assert len(expected) == min(step + 1, WINDOW_STEPS) and expected["step"][-1] == step
        if times is not None:
            assert times == expected["timestamp"].dt.strftime("%H:%M").to_list()
            assert times[-1] == sample["timestamp"].strftime("%H:%M")
        for m, values in window.items():
            staged = expected[m].to_numpy()
            printed = np.array([float(v) for v in values], dtype=staged.dtype)
            assert np.array_equal(printed, staged), (it.source_sample_id, m, values, staged)
            assert printed[-1] == np.array(sample[m], dtype=staged.dtype)  # the last row is the snapshot
    assert forms == {"alert", "table", "splunk"}
    # the same seed picks the same samples from the JSON and from the staging of one run
    from_json = metric_sample_items(metrics_json, 60, load_domain(), models_per_prompt=1, n_models=1, options="x",
                                    seed=3)
    assert [it.source_sample_id for it in from_json] == [it.source_sample_id for it in items]
    # the same prompt (the dataset's samples carry the window and the host), hence the same work item
    assert [it.prompt for it in from_json] == [it.prompt for it in items]
    assert [it.item_id for it in from_json] == [it.item_id for it in items]


def test_dataset_prompts_show_the_context_the_sample_carries(metrics_json):
    """From the dataset JSON, the window comes from each sample's own context: the same readings the
    staged traces hold, ending at the snapshot."""
    items = metric_sample_items(metrics_json, 40, load_domain(), models_per_prompt=1, n_models=1, options="x", seed=3)
    samples = {s["id"]: s for s in json.loads(metrics_json.read_text())["training_samples"]}
    for it in items:
        sample = samples[it.source_sample_id]
        assert sample["host"]["name"] in it.prompt
        times, window = _window_in(it.prompt)
        assert len(window) == 3
        for m, values in window.items():
            expected = sample["context"][m][-WINDOW_STEPS:]
            assert values == ["-" if v is None else str(v) for v in expected], (m, values, expected)
        if times is not None:
            assert times[-1] == sample["timestamp"][11:16] and len(times) == len(values)



def test_window_length_is_a_parameter(metrics_json):
    short = metric_sample_items(metrics_json.parent, 10, load_domain(), models_per_prompt=1, n_models=1, options="x",
                                seed=4, window_steps=3)
    assert all(len(next(iter(_window_in(it.prompt)[1].values()))) == 3 for it in short)
    none = metric_sample_items(metrics_json.parent, 10, load_domain(), models_per_prompt=1, n_models=1, options="x",
                               seed=4, window_steps=0)
    assert all("Trend" not in it.prompt and "timechart" not in it.prompt and "| time |" not in it.prompt
               for it in none)


def _drop_format(manifest):
    """What the manifest of an older version (one flat folder) looks like: no format."""
    data = json.loads(manifest.read_text())
    del data["format"]
    manifest.write_text(json.dumps(data))


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, named", [
    (lambda d: _flip_byte(d / "traces" / "traces-00000.parquet"), "traces/traces-00000.parquet"),
    (lambda d: (d / "samples" / "samples-00000.parquet").unlink(), "samples/samples-00000.parquet"),
    (lambda d: (d / "manifest.json").unlink(), "manifest.json"),
    (lambda d: _drop_format(d / "manifest.json"), "manifest.json: staging of an older layout"),
])
def test_a_damaged_staging_is_a_one_line_error(tmp_path, config_dir, metrics_json, capsys, damage, named):
    staging = tmp_path / "run" / "staging"
    shutil.copytree(metrics_json.parent / "staging", staging)
    damage(staging)
    code = main(["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"),
                 "--endpoint", "openai=http://127.0.0.1:9", "--models", "a", "--types", "metrics_explanation",
                 "--count", "2", "--from-metrics", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and str(staging / named) in err and err.count("\n") == 1, err


def test_staged_samples_run_and_export_with_their_ids(tmp_path, config_dir, metrics_json):
    run = metrics_json.parent
    items, answer = _truthful_and_confused(run, seed=20260105)
    assert all("Trend" in it.prompt or "timechart" in it.prompt or "| time |" in it.prompt for it in items)
    with LoopbackServer(models=("alpha", "beta"), answer=answer) as server:
        args = ["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"), "--quiet",
                "--endpoint", f"openai={server.url}", "--models", "alpha,beta", "--types", "metrics_explanation",
                "--count", "30", "--from-metrics", str(run)]
        assert main(args) == 0
        assert main(args) == 0                       # resume: nothing left to ask
        assert len(server.calls_for()) == 60
    samples = pl.read_parquet(run / "staging" / "samples" / "*.parquet")
    kinds = dict(zip(samples["id"].to_list(), samples["kind"].to_list()))
    data = json.loads((tmp_path / "out" / "language_dataset.json").read_text())
    exported = data["samples"]
    assert exported and {s["source_sample_id"] for s in exported} <= set(kinds)
    prompts = {it.source_sample_id: it.prompt for it in items}
    assert all(s["prompt"] == prompts[s["source_sample_id"]] for s in exported)  # each answer joins its sample
    assert all(s["label"] == (kinds[s["source_sample_id"]] or "normal") for s in exported)
    _truthful_kept_confused_dropped(items, exported, data["metadata"]["grounding_agreement"])


def _truthful_kept_confused_dropped(items, exported, agreement):
    """alpha is refused by the grounding check exactly on the samples whose data cannot ground their
    label (an anomaly with no metric moved in what the prompt shows); beta is kept only on leaks."""
    ungroundable = [it for it in items if it.label != "normal" and not it.moved]
    asked_alpha = len(items) // 2
    assert len(ungroundable) < asked_alpha / 2
    assert agreement["alpha"]["checked"] - agreement["alpha"]["agreed"] == len(ungroundable) // 2
    assert agreement["alpha"]["agreed"] > 0 and agreement["beta"]["rate"] < 0.5
    assert all(s["label"] == "memory_leak" for s in exported if s["model"] == "beta")


def test_traces_that_disagree_with_the_samples_are_refused(tmp_path, metrics_json):
    """Checksums can be rewritten; the join's own check still sees a window whose last point is not the sample."""
    from datasafe.integrity import file_record

    staging = tmp_path / "staging"
    shutil.copytree(metrics_json.parent / "staging", staging)
    traces = staging / "traces" / "traces-00000.parquet"
    pl.read_parquet(traces).with_columns(pl.col("cpu_usage") + 1.0).write_parquet(traces)
    manifest = json.loads((staging / "manifest.json").read_text())
    manifest["files"]["traces/traces-00000.parquet"] = file_record(traces)
    (staging / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LanguageError, match="the traces and samples tables disagree at sample"):
        metric_sample_items(staging, 5, load_domain(), models_per_prompt=1, n_models=1, options="x", seed=3)


# ------------------------------------------------------------------ balanced choice of samples
def _labelled_samples(tmp_path, counts: dict[str, int]):
    """A metrics JSON with `counts` samples per label (a kind or "normal")."""
    samples = []
    for label, n in counts.items():
        for _ in range(n):
            i = len(samples)
            samples.append({"id": f"s-{i}", "timestamp": f"2026-01-05T{i % 24:02d}:{i % 60:02d}:00Z",
                            "status": "normal" if label == "normal" else "anomaly",
                            "anomaly_type": None if label == "normal" else label,
                            "metrics": {"cpu_usage": 10.5 + i % 50, "memory_usage": 40.0, "load_average": 1.25}})
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"metadata": {}, "training_samples": samples}))
    return path


@pytest.mark.parametrize("share, count, expected", [
    (0.5, 60, {"normal": 30, "cpu_spike": 10, "memory_leak": 10, "disk_full": 10}),
    (0.5, 61, {"normal": 30, "cpu_spike": 10, "memory_leak": 10, "disk_full": 10}),  # + 1 kind: rounding
    (0.25, 60, {"normal": 15, "cpu_spike": 18, "memory_leak": 17, "disk_full": 10}),  # disk_full has 10 only
    (0.0, 30, {"normal": 0, "cpu_spike": 10, "memory_leak": 10, "disk_full": 10}),
    (1.0, 30, {"normal": 30, "cpu_spike": 0, "memory_leak": 0, "disk_full": 0}),
    (0.5, 200, {"normal": 140, "cpu_spike": 30, "memory_leak": 20, "disk_full": 10}),  # kinds run out: normal
])
def test_grounded_samples_are_balanced_over_the_kinds_and_normal(tmp_path, share, count, expected):
    path = _labelled_samples(tmp_path, {"normal": 240, "cpu_spike": 30, "memory_leak": 20, "disk_full": 10})
    items = metric_sample_items(path, count, load_domain(), models_per_prompt=1, n_models=1, options="x", seed=5,
                                normal_share=share)
    got = {label: 0 for label in expected}
    for it in items:
        got[it.label] += 1
    assert len(items) == min(count, 300) and len({it.source_sample_id for it in items}) == len(items)
    if count == 61:  # the odd one goes to one kind, whichever the seed puts first
        extra = [k for k in expected if k != "normal" and got[k] == expected[k] + 1]
        assert len(extra) == 1
        got[extra[0]] -= 1
    if share == 0.25:  # which kind gets the odd sample is the seed's choice
        assert sorted((got["cpu_spike"], got["memory_leak"])) == [17, 18]
        got["cpu_spike"], got["memory_leak"] = 18, 17
    assert got == expected


def test_balanced_choice_is_deterministic_for_a_seed(tmp_path):
    path = _labelled_samples(tmp_path, {"normal": 240, "cpu_spike": 30, "memory_leak": 20, "disk_full": 10})
    domain = load_domain()
    ids = [it.source_sample_id for it in metric_sample_items(path, 40, domain, models_per_prompt=1, n_models=1,
                                                             options="x", seed=5)]
    assert ids == [it.source_sample_id for it in metric_sample_items(path, 40, domain, models_per_prompt=1, n_models=1,
                                                                     options="x", seed=5)]
    assert ids != [it.source_sample_id for it in metric_sample_items(path, 40, domain, models_per_prompt=1, n_models=1,
                                                                     options="x", seed=6)]
    larger = {it.source_sample_id for it in metric_sample_items(path, 80, domain, models_per_prompt=1, n_models=1,
                                                                options="x", seed=5)}
    assert set(ids) <= larger  # raising the count keeps the earlier prompts' samples


def test_normal_share_comes_from_the_option_or_models_yaml(tmp_path, config_dir, capsys):
    from language import pipeline
    from language.settings import load_settings as load

    path = _labelled_samples(tmp_path, {"normal": 50, "cpu_spike": 50})
    settings = load(config_dir / "models.yaml")
    assert settings.grounding.normal_share == 0.5

    def normal_items(**kwargs):
        work = pipeline.plan_work(load_domain(), settings, list(settings.enabled()),
                                  targets={"metrics_explanation": 20}, seed=1, from_metrics=path,
                                  config_dir=config_dir, **kwargs)
        return sum(it.label == "normal" for it in work.items) // len({it.slot for it in work.items})

    assert normal_items() == 10
    assert normal_items(normal_share=0.2) == 4
    models = yaml.safe_load((config_dir / "models.yaml").read_text())
    models["grounding"] = {"normal_share": 0.8}
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    settings = load(config_dir / "models.yaml")
    assert normal_items() == 16
    models["grounding"] = {"normal_share": 1.5}
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    with pytest.raises(ConfigError, match=r"grounding\.normal_share"):
        load(config_dir / "models.yaml")
    models["grounding"] = {"normal_share": 0.5}
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    assert main(["generate", "--output-dir", str(tmp_path / "out"), "--config-dir", str(config_dir),
                 "--from-metrics", str(path), "--normal-share", "-0.1", "--quiet"]) == 2
    assert "--normal-share: must be between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "out" / "language_staging").exists()
# ------------------------------------------------------------------ log excerpts from a staging with logs
@pytest.fixture(scope="module")
def logs_staging(tmp_path_factory):
    out = tmp_path_factory.mktemp("with-logs")
    assert simulator_main(["--samples", "300", "--output-dir", str(out), "--quiet", "--seed", "5", "--logs"]) == 0
    return out / "staging"


def _excerpt_in(prompt: str) -> tuple[str, list[str]]:
    """(the header, the log lines) of the excerpt a prompt shows, in any of the three forms."""
    lines = prompt.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(("Log lines of ", "Splunk search: index=os_logs")))
    return lines[i], list(itertools.takewhile(lambda line: line.strip(), lines[i + 1:]))


def test_staged_prompts_show_the_hosts_log_lines_of_the_window(logs_staging):
    from simulator.logs import render_lines

    from simulator.logs import EXCERPT_LINES as LOG_LINES

    items = metric_sample_items(logs_staging, 40, load_domain(), models_per_prompt=1, n_models=1, options="x", seed=3)
    samples = {r["id"]: r for r in pl.read_parquet(logs_staging / "samples" / "*.parquet").iter_rows(named=True)}
    logs = pl.read_parquet(logs_staging / "logs" / "*.parquet")  # read whole: the reference
    logs = logs.with_columns(render_lines(logs).alias("line"))
    forms, kinds = set(), set()
    for it in items:
        sample = samples[it.source_sample_id]
        host, step = sample["host"], sample["step"]
        header, shown = _excerpt_in(it.prompt)
        forms.add(header.split()[0])
        window = logs.filter((pl.col("host") == host) & pl.col("step").is_between(step - WINDOW_STEPS + 1, step))
        assert len(shown) == min(LOG_LINES, len(window)) and len(shown) > 0
        assert "Splunk" in header or f"{len(shown)} of {len(window):,};" in header
        # the lines are lines of this host's window, in their file order
        position = {line: k for k, line in enumerate(window["line"].to_list())}
        assert all(line in position for line in shown), (it.source_sample_id, shown)
        assert [position[line] for line in shown] == sorted(position[line] for line in shown)
        chosen = window.filter(pl.col("line").is_in(shown))
        # the most severe line of the window is among them, and as many kinds of line as fit
        assert chosen["severity"].to_physical().max() == window["severity"].to_physical().max()
        assert chosen["template_id"].n_unique() == min(LOG_LINES, window["template_id"].n_unique())
        syslog = chosen.filter(pl.col("source") == "syslog")["line"]
        assert all(f" cn{host:05d} " in line for line in syslog)
        assert f"cn{host:05d}" in header or f"host=cn{host:05d}" in it.prompt  # the host as the lines name it
        kinds.add(it.label)
    assert forms == {"Log", "Splunk"} and "normal" in kinds and len(kinds) >= 3
    again = metric_sample_items(logs_staging, 40, load_domain(), models_per_prompt=1, n_models=1, options="x", seed=3)
    assert [it.prompt for it in again] == [it.prompt for it in items]


def test_the_excerpt_is_chosen_without_the_lines_event_ids(logs_staging, tmp_path):
    """The same staging with every line's event id cleared gives the same prompts: the choice of lines
    cannot give the label away."""
    from datasafe.integrity import file_record

    staging = tmp_path / "staging"
    shutil.copytree(logs_staging, staging)
    manifest = json.loads((staging / "manifest.json").read_text())
    labelled = 0
    for part in sorted((staging / "logs").glob("*.parquet")):
        frame = pl.read_parquet(part)
        labelled += frame["event_id"].is_not_null().sum()
        frame.with_columns(pl.lit(None, pl.Int64).alias("event_id")).write_parquet(part)
        manifest["files"][f"logs/{part.name}"] = {**file_record(part), "rows": len(frame)}
    (staging / "manifest.json").write_text(json.dumps(manifest))
    assert labelled > 0
    items = metric_sample_items(logs_staging, 30, load_domain(), models_per_prompt=1, n_models=1, options="x", seed=9)
    cleared = metric_sample_items(staging, 30, load_domain(), models_per_prompt=1, n_models=1, options="x", seed=9)
    assert any(it.label != "normal" for it in items)
    assert [it.prompt for it in cleared] == [it.prompt for it in items]


def test_a_staging_without_logs_shows_no_excerpt(metrics_json):
    items = metric_sample_items(metrics_json.parent, 10, load_domain(), models_per_prompt=1, n_models=1, options="x",
                                seed=4)
    assert not any("Log lines of " in it.prompt or "index=os_logs" in it.prompt for it in items)


def test_the_cli_sends_the_excerpt_to_the_model(tmp_path, config_dir, logs_staging):
    """python -m language generate --from-metrics <staging with logs>: the prompts on the wire carry the
    host's log lines."""
    with LoopbackServer(models=("alpha",), answer=lambda model, messages, options: "The host looks healthy.") as server:
        assert main(["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"), "--quiet",
                     "--endpoint", f"openai={server.url}", "--models", "alpha", "--types", "metrics_explanation",
                     "--count", "6", "--from-metrics", str(logs_staging)]) in (0, 3)
        prompts = [c.body["messages"][-1]["content"] for c in server.calls_for("/v1/chat")]
    assert len(prompts) == 6
    assert all(_excerpt_in(p)[1] for p in prompts)


def test_staged_prompts_show_the_excerpt_the_dataset_sample_carries(logs_staging):
    """Over the sample's context window (the default window), a staged prompt's log lines are the lines its
    sample in metrics_dataset.json carries (one function chooses both), and a prompt built from the JSON shows
    them, under the same header, beside the same metrics window."""
    from simulator.config import load_config

    assert load_config(None).simulation.context_steps == WINDOW_STEPS
    dataset = logs_staging.parent / "metrics_dataset.json"
    carried = {s["id"]: s["logs"] for s in json.loads(dataset.read_bytes())["training_samples"]}
    staged = metric_sample_items(logs_staging, 30, load_domain(), models_per_prompt=1, n_models=1, options="x", seed=3)
    from_json = metric_sample_items(dataset, 30, load_domain(), models_per_prompt=1, n_models=1, options="x", seed=3)
    assert [it.source_sample_id for it in from_json] == [it.source_sample_id for it in staged]
    for it, again in zip(staged, from_json):
        assert _window_in(it.prompt) == _window_in(again.prompt)
        excerpt = carried[it.source_sample_id]
        _, shown = _excerpt_in(it.prompt)
        assert len(shown) == len(excerpt["lines"]) > 0
        assert all(line.endswith(" " + carried_line["message"]) for line, carried_line in zip(shown, excerpt["lines"]))
        header, listed = _excerpt_in(again.prompt)
        assert listed == [f"{line['time']} {line['source']} {line['severity']}: {line['message']}"
                          for line in excerpt["lines"]]
        assert "Splunk" in header or f"({len(listed)} of {excerpt['total']:,};" in header
        assert header == _excerpt_in(it.prompt)[0]  # the host, the span, the lines shown and the window's total


def test_a_json_sample_with_a_bad_excerpt_is_refused(tmp_path):
    path = tmp_path / "metrics_dataset.json"
    sample = {"id": "s-1", "timestamp": "2026-01-01T00:00:00Z", "metrics": {"cpu_usage": 50.0}, "status": "normal",
              "logs": {"total": 3, "lines": ["not an object"]}}
    path.write_text(json.dumps({"training_samples": [sample]}))
    with pytest.raises(LanguageError, match="sample s-1: logs is not"):
        metric_sample_items(path, 1, load_domain(), models_per_prompt=1, n_models=1, options="x", seed=1)
