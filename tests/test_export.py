"""The training JSON written in chunks is the JSON of the whole frame, whatever the chunk size."""

from __future__ import annotations

import orjson
import polars as pl
import pytest
from hypothesis import given, strategies as st

import simulator.export as export
from simulator import generate_samples

SAMPLES = 137


@pytest.fixture(scope="module")
def result():
    return generate_samples(SAMPLES, anomaly_ratio=0.3, seed=11)


def _whole(result) -> bytes:
    """The reference: one encoding of the whole frame (its windows spliced in), wrapped as the file's layout."""
    body = bytes(export._encode(export.training_frame(result.samples), export.window_arrays(result.samples))) \
        if len(result.samples) else b""
    return b'{"metadata":' + orjson.dumps(result.metadata) + b',"training_samples":[' + body + b"]}\n"


@given(chunk=st.integers(1, SAMPLES + 5), rows=st.sampled_from([0, 1, 2, 50, SAMPLES]))
def test_chunked_export_is_byte_identical_to_one_encoding(tmp_path_factory, result, chunk, rows):
    part = type(result)(result.samples.head(rows), result.events, result.metadata, result.config)
    path = tmp_path_factory.mktemp("export") / "metrics_dataset.json"
    old = export.JSON_CHUNK_ROWS
    export.JSON_CHUNK_ROWS = chunk
    try:
        export.write_metrics_dataset(path, part.metadata, part.samples)
    finally:
        export.JSON_CHUNK_ROWS = old
    data = path.read_bytes()
    assert data == _whole(part)
    parsed = orjson.loads(data)
    assert [s["id"] for s in parsed["training_samples"]] == part.samples["id"].to_list()


@given(st.lists(st.lists(st.booleans(), min_size=11, max_size=11), min_size=1, max_size=40))
def test_anomalous_metrics_names_the_flagged_metrics_in_catalogue_order(flags):
    from simulator.catalogue import METRICS
    from simulator.context import ANOMALOUS_PREFIX

    frame = pl.DataFrame({ANOMALOUS_PREFIX + m: [row[i] for row in flags] for i, m in enumerate(METRICS)})
    assert export.anomalous_metrics(frame).to_list() == [[m for m, on in zip(METRICS, row) if on] for row in flags]


def test_the_json_targets_name_the_flagged_metrics(tmp_path, result):
    from simulator.catalogue import METRICS
    from simulator.context import ANOMALOUS_PREFIX

    path = tmp_path / "metrics_dataset.json"
    export.write_metrics_dataset(path, result.metadata, result.samples)
    written = [s["targets"]["anomalous_metrics"] for s in orjson.loads(path.read_bytes())["training_samples"]]
    assert written == [[m for m in METRICS if row[ANOMALOUS_PREFIX + m]] for row in result.samples.iter_rows(named=True)]
    assert any(len(names) > 1 for names in written)  # the order is tested too


def test_the_json_only_sample_job_never_loads_arrow(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = ("import sys; from simulator.__main__ import main; "
            f"assert main(['--samples', '300', '--quiet', '--output-dir', {str(tmp_path)!r}]) == 0; "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'pyarrow'); "
            "assert not loaded, loaded")
    run = subprocess.run([sys.executable, "-c", code], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "metrics_dataset.json").exists()
