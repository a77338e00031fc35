"""Grounded metrics explanations: prompts from simulated samples, answers checked against their labels."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from language.__main__ import main
from language.domain import load_domain
from language.grounding import grounding_check, load_vocabulary, metric_sample_items
from language.settings import load_settings
from simulator.__main__ import main as simulator_main

from conftest import ROOT
from loopback import LoopbackServer

VOCAB = load_vocabulary()


@pytest.mark.parametrize("text, label, moved, ok", [
    ("A GC storm: the heap sits at 97 % and GC time at 55 %.", "jvm_gc_storm", ("java_heap_usage",), True),
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
    d = tmp_path / "config"
    shutil.copytree(ROOT / "data_config", d)
    models = yaml.safe_load((d / "models.yaml").read_text())
    models["requests"].update(timeout_s=2, backoff_base_s=0.01, backoff_max_s=0.05)
    (d / "models.yaml").write_text(yaml.safe_dump(models))
    return d


def test_prompts_show_the_sample_and_include_normal_ones(metrics_json):
    items = metric_sample_items(metrics_json, 60, load_domain(), 1, 1, "x", seed=3)
    labels = [it.label for it in items]
    assert "normal" in labels and len(set(labels)) >= 3
    samples = {s["id"]: s for s in json.loads(metrics_json.read_text())["training_samples"]}
    for it in items:
        sample = samples[it.source_sample_id]
        assert it.label == (sample["anomaly_type"] if sample["status"] == "anomaly" else "normal")
        assert str(sample["metrics"]["cpu_usage"]) in it.prompt


def _truthful_and_confused(metrics_json, seed):
    """A fake pair of models: alpha explains each sample correctly, beta always blames a memory leak."""
    items = metric_sample_items(metrics_json, 30, load_domain(), 2, 2, load_settings().fingerprint(), seed)
    truth = {it.prompt: it for it in items}

    def answer(model, messages, options):
        item = truth[messages[-1]["content"]]
        if model == "beta" and item.label != "memory_leak":
            return ("This is a memory leak: memory keeps growing on the host and will end in an out of "
                    "memory kill unless someone restarts the service and looks at the heap dump soon enough.")
        if item.label == "normal":
            return ("The host looks healthy: every reading is within the usual range for this kind of server, "
                    "so no action is needed now beyond the regular checks on the dashboard tomorrow morning.")
        phrase = VOCAB.kinds[item.label][0]
        metric = VOCAB.metrics[item.moved[0]][0]
        return (f"This is a {phrase}. The {metric} reading shows it clearly against the host's usual level; "
                f"check the service logs from the start of the window, confirm the cause, and record what you "
                f"changed in the incident ticket for prompt {abs(hash(item.prompt)) % 10**6}.")
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
    agreement = data["metadata"]["grounding_agreement"]
    assert agreement["alpha"]["rate"] == 1.0 and agreement["beta"]["rate"] < 0.5
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
