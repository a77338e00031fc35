"""The training JSON written in chunks is the JSON of the whole frame, whatever the chunk size."""

from __future__ import annotations

import orjson
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
