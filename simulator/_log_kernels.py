"""Kernels of the log simulator: counter-based draws and Poisson counts, arrays in and arrays out.

A log draw is a pure function of (host key, stream, a, b): the host key comes from
SeedSequence(seed, spawn_key=(LOG_STREAM, host)), the stream names the template or field, and
(a, b) say which line and which of its values.  Nothing is carried from draw to draw, so the
lines of a host are the same whichever hosts are simulated with it and however many threads run.
"""

from __future__ import annotations

import numpy as np

from ._numba import jit, jit_parallel, prange
from ._rng import GOLDEN, splitmix64

INV_2_53 = 1.0 / 9007199254740992.0


@jit
def hash_uniforms(keys, stream, a, b, out):
    """out[i] = uniform in (0, 1) from (keys[i], stream, a[i], b[i])."""
    for i in range(out.shape[0]):
        z = splitmix64(keys[i] ^ stream)
        z = splitmix64(z + np.uint64(a[i]) * GOLDEN)
        z = splitmix64(z + np.uint64(b[i]) * GOLDEN)
        out[i] = ((z >> np.uint64(11)) + 0.5) * INV_2_53


@jit
def poisson_counts(lam, u, out):
    """out[i] = Poisson(lam[i]) by inverse CDF of u[i] (normal approximation above 60)."""
    for i in range(out.shape[0]):
        mu = lam[i]
        if mu <= 0.0:
            out[i] = 0
            continue
        if mu > 60.0:
            # inverse of the normal CDF by the logistic approximation: fine for counts this large
            x = np.log(u[i] / (1.0 - u[i])) / 1.702
            out[i] = max(0, int(np.floor(mu + np.sqrt(mu) * x + 0.5)))
            continue
        p = np.exp(-mu)
        cdf = p
        k = 0
        while u[i] > cdf and k < 1000:
            k += 1
            p *= mu / k
            cdf += p
        out[i] = k


@jit
def _digits(x):
    """Decimal digits of a non-negative integer."""
    n = 1
    while x >= 10:
        x //= 10
        n += 1
    return n


@jit
def _field_length(kind, v, str_off):
    if kind < 0:
        return str_off[v + 1] - str_off[v]
    if kind == 0:
        return _digits(-v) + 1 if v < 0 else _digits(v)
    whole = v // 10 ** kind
    return _digits(whole) + 1 + kind


@jit
def _write_int(out, pos, x, width):
    """Write non-negative x as exactly `width` decimal digits (zero-padded) at out[pos:]."""
    for j in range(width - 1, -1, -1):
        out[pos + j] = 48 + x % 10
        x //= 10
    return pos + width


@jit_parallel
def format_lines(tmpl, part0, n_fields, lit_data, lit_off, kinds, vals, str_data, str_off):
    """Render n lines of many templates as UTF-8 bytes with Arrow offsets, in one pass over all lines.

    Line i uses template t = tmpl[i]: literal parts part0[t] .. part0[t] + n_fields[t] (lit_off
    indexes lit_data), with field j between parts j and j + 1.  kinds[t, j] < 0: vals[i, j] indexes
    the string table (str_data, str_off); 0: an integer; d > 0: a non-negative integer scaled by
    10^d, written with d digits after the point.  Each line writes only its own slice of the output.
    """
    n = vals.shape[0]
    lengths = np.empty(n, np.int64)
    for i in prange(n):
        t = tmpl[i]
        p = part0[t]
        k = n_fields[t]
        length = lit_off[p + k + 1] - lit_off[p]
        for j in range(k):
            length += _field_length(kinds[t, j], vals[i, j], str_off)
        lengths[i] = length
    offsets = np.zeros(n + 1, np.int64)
    for i in range(n):
        offsets[i + 1] = offsets[i] + lengths[i]
    out = np.empty(offsets[n], np.uint8)
    for i in prange(n):
        t = tmpl[i]
        p = part0[t]
        k = n_fields[t]
        pos = offsets[i]
        for j in range(k + 1):
            for b in range(lit_off[p + j], lit_off[p + j + 1]):
                out[pos] = lit_data[b]
                pos += 1
            if j == k:
                break
            kind = kinds[t, j]
            v = vals[i, j]
            if kind < 0:
                for b in range(str_off[v], str_off[v + 1]):
                    out[pos] = str_data[b]
                    pos += 1
            elif kind == 0:
                if v < 0:
                    out[pos] = 45
                    pos += 1
                    v = -v
                pos = _write_int(out, pos, v, _digits(v))
            else:
                scale = 10 ** kind
                whole = v // scale
                pos = _write_int(out, pos, whole, _digits(whole))
                out[pos] = 46
                pos = _write_int(out, pos + 1, v % scale, kind)
    return offsets, out
