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


TEN = np.uint64(10)  # the windows' digits come from unsigned whole numbers: a division by ten is a
                     # multiply and a shift, without the sign fix-ups of a signed one (8 % of the splice)


@jit
def _unsigned_digits(x):
    """Decimal digits of an unsigned whole number (a uint64 throughout: mixed with a signed one, numba
    would compute in floats)."""
    n = 1
    while x >= TEN:
        x //= TEN
        n += 1
    return n


NULL = -1  # `layout`'s decimals of a missing value


@jit
def _scaled(a, integer, d):
    """|v| as the (unsigned) whole number whose digits are written: rounded, scaled by 10^d for a float."""
    return np.uint64(np.floor(a + 0.5)) if integer else np.uint64(np.floor(a * _POW10[d] + 0.5))


@jit
def _size(neg, digits, integer, d):
    """Bytes of a number: sign, digits, and for a float the point and at least one decimal."""
    if integer:
        return neg + digits
    return neg + (digits + 2 if d == 0 else max(digits, d + 1) + 1)


@jit
def layout(v, integer):
    """(decimals, bytes) of `v` as `write_number` writes it: decimals NULL for a missing value, 0
    for an integer metric (and for a float written "N.0")."""
    if np.isnan(v):
        return NULL, 4
    a = abs(v)
    d = 0 if integer else _decimals(a)
    return d, _size(1 if v < 0 else 0, _unsigned_digits(_scaled(a, integer, d)), integer, d)


@jit
def write_number(buf, pos, v, integer):
    """Write `v` at buf[pos:] (see the module's rules); return the position after it."""
    d, size = layout(v, integer)
    return write_laid_out(buf, pos, v, integer, d, size)


@jit
def _last_digit(x):
    """(the ASCII code of the unsigned x's last digit, x without it)."""
    rest = x // TEN
    return np.uint8(48 + (x - rest * TEN)), rest


@jit
def write_laid_out(buf, pos, v, integer, d, size):
    """Write `v` at buf[pos:] with its decimals `d` and bytes `size` from `layout`: the digits of |v|
    scaled by 10^d written from the right, the point inserted d digits from the end; returns
    pos + size (known before the digits are, so the next value need not wait for them)."""
    end = pos + size
    if d == NULL:
        buf[pos] = 110
        buf[pos + 1] = 117
        buf[pos + 2] = 108
        buf[pos + 3] = 108
        return end
    if v < 0:
        buf[pos] = 45  # -
    x = _scaled(abs(v), integer, d)
    i = end - 1
    if not integer and d == 0:
        buf[i] = 48  # "N.0"
        buf[i - 1] = 46
        i -= 2
    for _ in range(d):
        buf[i], x = _last_digit(x)
        i -= 1
    if d:
        buf[i] = 46  # .
        i -= 1
    buf[i], x = _last_digit(x)  # the integer part has at least one digit
    while x:
        i -= 1
        buf[i], x = _last_digit(x)
    return end


@jit
def _lay_out_window(window, s, integer, keys, key_ends, decimals, sizes):
    """Bytes of `{"m0":[...],"m1":[...]}` for sample s of window [M, n, k]; each value's decimals
    and bytes into decimals[m, j] and sizes[m, j] (for `_write_window`: measured once, written once)."""
    total = 2  # braces
    n_metrics, k = window.shape[0], window.shape[2]
    start = 0
    for m in range(n_metrics):
        total += key_ends[m] - start + 1 + max(k - 1, 0) + (1 if m < n_metrics - 1 else 0)  # key, ], commas
        start = key_ends[m]
        for j in range(k):
            d, size = layout(window[m, s, j], integer[m])
            decimals[m, j] = d
            sizes[m, j] = size
            total += size
    return total


@jit
def _write_window(buf, pos, window, s, integer, keys, key_ends, decimals, sizes):
    buf[pos] = 123  # {
    pos += 1
    n_metrics, k = window.shape[0], window.shape[2]
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
            pos = write_laid_out(buf, pos, window[m, s, j], integer[m], decimals[m, j], sizes[m, j])
        buf[pos] = 93  # ]
        pos += 1
        if m < n_metrics - 1:
            buf[pos] = 44
            pos += 1
    buf[pos] = 125  # }
    return pos + 1


@jit_parallel
def splice_rows(rows, row_ends, fine, coarse, integer, keys, key_ends, fine_key, coarse_key):
    """The rows of `rows` (ndjson, row i ends at row_ends[i]) each with the windows (metric-major:
    [M, n, steps]) appended under `fine_key` and `coarse_key` (coarse skipped when it has no
    columns), joined by commas.
    Each row's length is measured (its values' decimals and sizes kept), then each row written at its
    own offset (race-free in parallel)."""
    n = row_ends.shape[0]
    n_metrics = integer.shape[0]
    no_integers = np.zeros(n_metrics, dtype=np.bool_)
    with_coarse = coarse.shape[2] > 0
    fine_dec = np.empty((n, n_metrics, fine.shape[2]), dtype=np.int8)  # row-major: each row's own
    coarse_dec = np.empty((n, n_metrics, coarse.shape[2]), dtype=np.int8)
    fine_size = np.empty((n, n_metrics, fine.shape[2]), dtype=np.int8)
    coarse_size = np.empty((n, n_metrics, coarse.shape[2]), dtype=np.int8)
    length = np.empty(n, dtype=np.int64)
    for i in prange(n):
        s = np.int64(i)  # prange's index is uint64 inside the parallel region: one type for the callees
        begin = row_ends[s - 1] + 1 if s else 0
        size = (1 if s else 0) + row_ends[s] - begin + len(fine_key) + _lay_out_window(
            fine, s, integer, keys, key_ends, fine_dec[s], fine_size[s])
        if with_coarse:
            size += len(coarse_key) + _lay_out_window(coarse, s, no_integers, keys, key_ends, coarse_dec[s],
                                                      coarse_size[s])
        length[s] = size
    offset = np.zeros(n + 1, dtype=np.int64)
    offset[1:] = np.cumsum(length)
    out = np.empty(offset[n], dtype=np.uint8)
    for i in prange(n):
        s = np.int64(i)
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
        pos = _write_window(out, pos, fine, s, integer, keys, key_ends, fine_dec[s], fine_size[s])
        if with_coarse:
            out[pos:pos + len(coarse_key)] = coarse_key
            pos += len(coarse_key)
            pos = _write_window(out, pos, coarse, s, no_integers, keys, key_ends, coarse_dec[s],
                                coarse_size[s])
        out[pos] = 125
    return out


def metric_keys(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The bytes `"name":[` of every metric, concatenated, and where each ends."""
    parts = [f'"{n}":['.encode() for n in names]
    return np.frombuffer(b"".join(parts), dtype=np.uint8).copy(), np.cumsum([len(p) for p in parts])


def splice_windows(ndjson: bytes, fine: np.ndarray, coarse: np.ndarray, *, integer: np.ndarray,
                   names: list[str]) -> memoryview:
    """The rows of `ndjson` with "context" (fine [n, M, steps]) and "history" (coarse [n, M, hours])
    objects appended; see the module. Windows that are views of metric-major arrays are not copied."""
    rows = np.frombuffer(ndjson, dtype=np.uint8)
    row_ends = np.flatnonzero(rows == 10)
    keys, key_ends = metric_keys(names)
    out = splice_rows(rows, row_ends, _metric_major(fine), _metric_major(coarse), integer.astype(np.bool_), keys,
                      key_ends,
                      np.frombuffer(b',"context":', dtype=np.uint8).copy(),
                      np.frombuffer(b',"history":', dtype=np.uint8).copy())
    return memoryview(out)


def _metric_major(window: np.ndarray) -> np.ndarray:
    """[n, M, k] as a C-ordered float32 [M, n, k] (a view when it is one already)."""
    return np.ascontiguousarray(np.transpose(window, (1, 0, 2)), dtype=np.float32)
