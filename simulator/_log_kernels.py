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
from .jsonfmt import _digits

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
def format_lines(order, tmpl, part0, n_fields, lit_data, lit_off, kinds, vals, str_data, str_off):
    """Render n lines of many templates as UTF-8 bytes with Arrow offsets, in one pass over all lines.

    Output line i is input row r = order[i] (the rows need no reordering copy first); it uses
    template t = tmpl[r]: literal parts part0[t] .. part0[t] + n_fields[t] (lit_off
    indexes lit_data), with field j between parts j and j + 1.  kinds[t, j] < 0: vals[r, j] indexes
    the string table (str_data, str_off); 0: an integer; d > 0: a non-negative integer scaled by
    10^d, written with d digits after the point.  Each line writes only its own slice of the output.
    """
    n = order.shape[0]
    lengths = np.empty(n, np.int64)
    for i in prange(n):
        r = order[i]
        t = tmpl[r]
        p = part0[t]
        k = n_fields[t]
        length = lit_off[p + k + 1] - lit_off[p]
        for j in range(k):
            length += _field_length(kinds[t, j], vals[r, j], str_off)
        lengths[i] = length
    offsets = np.zeros(n + 1, np.int64)
    for i in range(n):
        offsets[i + 1] = offsets[i] + lengths[i]
    out = np.empty(offsets[n], np.uint8)
    for i in prange(n):
        r = order[i]
        t = tmpl[r]
        p = part0[t]
        k = n_fields[t]
        pos = offsets[i]
        for j in range(k + 1):
            a = lit_off[p + j]
            e = lit_off[p + j + 1]
            out[pos:pos + e - a] = lit_data[a:e]
            pos += e - a
            if j == k:
                break
            kind = kinds[t, j]
            v = vals[r, j]
            if kind < 0:
                a = str_off[v]
                e = str_off[v + 1]
                out[pos:pos + e - a] = str_data[a:e]
                pos += e - a
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


@jit
def _uniform(key, stream, a, b):
    z = splitmix64(key ^ stream)
    z = splitmix64(z + np.uint64(a) * GOLDEN)
    z = splitmix64(z + np.uint64(b) * GOLDEN)
    return ((z >> np.uint64(11)) + 0.5) * INV_2_53


@jit_parallel
def gc_pauses(n, offsets, total_us, keys, stream, t0, step0_ms, dt_ms, heap, floor, full, young_at, cap,
              slots, hix, step, time_ms, pause_us, before_mb, after_mb, is_full):
    """The GC pauses of every interval (host h, step index i; flat g = h * T + i), each interval's slice.

    The interval's total GC time (microseconds) is split into n[g] pauses by random weights: floors
    first, then the remainder one microsecond at a time, so the pauses add up exactly.  Pauses are
    spread in order over (t_i - interval, t_i]; a young collection goes from about the young-GC
    occupancy to the old-generation floor, a full one (heap pinned >= 95 %) reclaims 0.5-3 % of the heap.
    """
    T = heap.shape[1]
    for g in prange(n.shape[0]):
        m = n[g]
        if m == 0:
            continue
        h = g // T
        i = g % T
        s = t0 + i
        lo = offsets[g]
        key = keys[h]
        wsum = 0.0
        for k in range(m):
            wsum += 0.5 + _uniform(key, stream, s, k * slots)
        assigned = 0
        for k in range(m):
            w = 0.5 + _uniform(key, stream, s, k * slots)   # the same draw again: no scratch array
            share = np.int64(np.floor(total_us[g] * w / wsum))
            pause_us[lo + k] = share
            assigned += share
        rem = total_us[g] - assigned
        hp = heap[h, i]
        fl = floor[h, i]
        c = cap[h]
        end_ms = step0_ms + i * dt_ms
        for k in range(m):
            pause_us[lo + k] += rem // m + (1 if k < rem % m else 0)
            frac = (k + _uniform(key, stream, s, k * slots + 1)) / m
            time_ms[lo + k] = end_ms - dt_ms + 1 + np.int64(np.floor(frac * dt_ms))
            u1 = _uniform(key, stream, s, k * slots + 2)
            u2 = _uniform(key, stream, s, k * slots + 3)
            if full[h, i]:
                b = min(hp * (0.995 + 0.005 * u1), 100.0)
                a = max(b - (0.5 + 2.5 * u2), 0.0)
            else:
                b = min(max(young_at[h] * (0.97 + 0.05 * u1), hp + 1.0), 100.0)
                a = min(max(fl + (hp - fl) * 0.3 * u2, 0.0), 100.0)
            before_mb[lo + k] = np.int64(np.floor(b / 100.0 * c + 0.5))
            after_mb[lo + k] = np.int64(np.floor(a / 100.0 * c + 0.5))
            hix[lo + k] = h
            step[lo + k] = s
            is_full[lo + k] = full[h, i]


@jit_parallel
def excerpt_picks(template, severity, starts, ends, n_templates, limit):
    """Per window w (rows starts[w] .. ends[w] - 1, in time order) the rows of its excerpt, at most
    `limit`, ascending (-1 pads): ranked by (nth, -severity, seen, -row), where nth counts the later
    rows of the row's template in the window (0 = its latest) and seen its rows in the window. A row
    with nth >= limit never ranks in, so each window keeps limit rows per template at most as
    candidates. Each window writes only its own row of the output."""
    n = starts.shape[0]
    out = np.full((n, limit), -1, np.int64)
    for w in prange(n):
        lo = starts[w]
        hi = ends[w]
        seen = np.zeros(n_templates, np.int64)
        for r in range(lo, hi):
            seen[template[r]] += 1
        later = np.zeros(n_templates, np.int64)
        cand = np.empty(min(hi - lo, n_templates * limit), np.int64)
        nth = np.empty_like(cand)
        k = 0
        for r in range(hi - 1, lo - 1, -1):  # latest first: nth of a row = its template's rows seen so far
            t = template[r]
            if later[t] < limit:
                cand[k] = r
                nth[k] = later[t]
                k += 1
            later[t] += 1
        taken = 0
        while taken < limit and taken < k:
            best = taken
            for j in range(taken + 1, k):  # the best of the rest by the ranking key
                a, b = cand[j], cand[best]
                if nth[j] != nth[best]:
                    better = nth[j] < nth[best]
                elif severity[a] != severity[b]:
                    better = severity[a] > severity[b]
                elif seen[template[a]] != seen[template[b]]:
                    better = seen[template[a]] < seen[template[b]]
                else:
                    better = a > b
                if better:
                    best = j
            cand[taken], cand[best] = cand[best], cand[taken]
            nth[taken], nth[best] = nth[best], nth[taken]
            taken += 1
        out[w, :taken] = np.sort(cand[:taken])
    return out
