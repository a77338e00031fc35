"""JSON text of the samples' windows (context and history lists), written by a kernel.

Polars encodes nested lists at about 8 M values/s; the windows are most of a sample's values, so
they are formatted here at memory speed and spliced into the rows Polars encodes (everything else):
each row of `write_ndjson` (one per line; a newline inside a string is escaped) loses its closing
brace, gets `,"context":{...},"history":{...}}`, and the rows are joined by commas, the layout of
`write_json`'s array without its brackets.

A float is written as the shortest fixed-point decimal that reads back as the same float32 (the
value the simulator reported), with at least one decimal ("56.0"), for values from 1e-4 (the finest
resolution a metric reports) up; values below 5e-14 are written "0.0". An integer metric is written
as an integer, a missing value (NaN) as null.
"""

from __future__ import annotations

import numpy as np

from ._numba import jit, jit_parallel, prange

MAX_DECIMALS = 13  # a float32 has at most 9 significant digits; from 1e-4 up that is 13 decimals
_POW10 = np.array([10.0 ** d for d in range(MAX_DECIMALS + 1)])
_POW10_INT = np.array([10 ** d for d in range(MAX_DECIMALS + 1)], dtype=np.int64)


@jit
def _decimals(v):
    """Fewest decimals (<= MAX_DECIMALS) whose rounding of |v| reads back as the float32 |v|; 0 for a
    value that rounds to 0 at MAX_DECIMALS (written "0.0": far below any collector's resolution)."""
    if v * _POW10[MAX_DECIMALS] < 0.5:
        return 0
    target = np.float32(v)
    for d in range(MAX_DECIMALS + 1):
        scale = _POW10[d]
        if np.float32(np.floor(v * scale + 0.5) / scale) == target:
            return d
    return MAX_DECIMALS


@jit
def _digits(x):
    """Decimal digits of a non-negative integer (the log line kernels use it too)."""
    n = 1
    while x >= 10:
        x //= 10
        n += 1
    return n


@jit
def number_length(v, integer):
    """Bytes `write_number` writes for `v`."""
    if np.isnan(v):
        return 4
    neg = 1 if v < 0 else 0
    a = -v if v < 0 else v
    if integer:
        return neg + _digits(np.int64(np.floor(a + 0.5)))
    d = _decimals(a)
    x = np.int64(np.floor(a * _POW10[d] + 0.5))
    return neg + _digits(x // _POW10_INT[d]) + 1 + max(d, 1)


@jit
def write_number(buf, pos, v, integer):
    """Write `v` at buf[pos:] (see the module's rules); return the position after it."""
    if np.isnan(v):  # null
        buf[pos] = 110
        buf[pos + 1] = 117
        buf[pos + 2] = 108
        buf[pos + 3] = 108
        return pos + 4
    if v < 0:
        buf[pos] = 45  # -
        pos += 1
        v = -v
    if integer:
        return _write_int(buf, pos, np.int64(np.floor(v + 0.5)))
    d = _decimals(v)
    scale = _POW10_INT[d]
    x = np.int64(np.floor(v * _POW10[d] + 0.5))
    pos = _write_int(buf, pos, x // scale)
    buf[pos] = 46  # .
    pos += 1
    if d == 0:
        buf[pos] = 48
        return pos + 1
    frac = x % scale
    for k in range(d - 1, -1, -1):
        buf[pos + k] = 48 + frac % 10
        frac //= 10
    return pos + d


@jit
def _write_int(buf, pos, x):
    n = _digits(x)
    for k in range(n - 1, -1, -1):
        buf[pos + k] = 48 + x % 10
        x //= 10
    return pos + n


@jit
def _window_length(window, s, integer, keys, key_ends):
    """Bytes of `{"m0":[...],"m1":[...]}` for sample s of window [n, M, k]."""
    total = 2  # braces
    n_metrics, k = window.shape[1], window.shape[2]
    start = 0
    for m in range(n_metrics):
        total += key_ends[m] - start + 1 + max(k - 1, 0) + (1 if m < n_metrics - 1 else 0)  # key, ], commas
        start = key_ends[m]
        for j in range(k):
            total += number_length(window[s, m, j], integer[m])
    return total


@jit
def _write_window(buf, pos, window, s, integer, keys, key_ends):
    buf[pos] = 123  # {
    pos += 1
    n_metrics, k = window.shape[1], window.shape[2]
    start = 0
    for m in range(n_metrics):
        n_key = key_ends[m] - start
        buf[pos:pos + n_key] = keys[start:key_ends[m]]  # "name":[
        pos += n_key
        start = key_ends[m]
        for j in range(k):
            if j:
                buf[pos] = 44  # ,
                pos += 1
            pos = write_number(buf, pos, window[s, m, j], integer[m])
        buf[pos] = 93  # ]
        pos += 1
        if m < n_metrics - 1:
            buf[pos] = 44
            pos += 1
    buf[pos] = 125  # }
    return pos + 1


@jit_parallel
def splice_rows(rows, row_ends, fine, coarse, integer, keys, key_ends, fine_key, coarse_key):
    """The rows of `rows` (ndjson, row i ends at row_ends[i]) each with the windows appended under
    `fine_key` and `coarse_key` (coarse skipped when it has no columns), joined by commas.
    Each row's length is measured, then each row written at its own offset (race-free in parallel)."""
    n = row_ends.shape[0]
    no_integers = np.zeros(integer.shape[0], dtype=np.bool_)
    with_coarse = coarse.shape[2] > 0
    length = np.empty(n, dtype=np.int64)
    for s in prange(n):
        begin = row_ends[s - 1] + 1 if s else 0
        size = (1 if s else 0) + row_ends[s] - begin + len(fine_key) + _window_length(fine, s, integer, keys, key_ends)
        if with_coarse:
            size += len(coarse_key) + _window_length(coarse, s, no_integers, keys, key_ends)
        length[s] = size
    offset = np.zeros(n + 1, dtype=np.int64)
    offset[1:] = np.cumsum(length)
    out = np.empty(offset[n], dtype=np.uint8)
    for s in prange(n):
        begin = row_ends[s - 1] + 1 if s else 0
        pos = offset[s]
        if s:
            out[pos] = 44
            pos += 1
        body = row_ends[s] - 1 - begin  # the row without its closing brace
        out[pos:pos + body] = rows[begin:begin + body]
        pos += body
        out[pos:pos + len(fine_key)] = fine_key
        pos += len(fine_key)
        pos = _write_window(out, pos, fine, s, integer, keys, key_ends)
        if with_coarse:
            out[pos:pos + len(coarse_key)] = coarse_key
            pos += len(coarse_key)
            pos = _write_window(out, pos, coarse, s, no_integers, keys, key_ends)
        out[pos] = 125
    return out


def metric_keys(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The bytes `"name":[` of every metric, concatenated, and where each ends."""
    parts = [f'"{n}":['.encode() for n in names]
    return np.frombuffer(b"".join(parts), dtype=np.uint8).copy(), np.cumsum([len(p) for p in parts])


def splice_windows(ndjson: bytes, fine: np.ndarray, coarse: np.ndarray, integer: np.ndarray,
                   names: list[str]) -> memoryview:
    """The rows of `ndjson` with "context" (fine) and "history" (coarse) objects appended; see the module."""
    rows = np.frombuffer(ndjson, dtype=np.uint8)
    row_ends = np.flatnonzero(rows == 10)
    keys, key_ends = metric_keys(names)
    out = splice_rows(rows, row_ends, np.ascontiguousarray(fine, dtype=np.float32),
                      np.ascontiguousarray(coarse, dtype=np.float32), integer.astype(np.bool_), keys, key_ends,
                      np.frombuffer(b',"context":', dtype=np.uint8).copy(),
                      np.frombuffer(b',"history":', dtype=np.uint8).copy())
    return memoryview(out)
