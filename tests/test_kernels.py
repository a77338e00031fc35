"""Each kernel piece against a plain NumPy / Python reference on small inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy import stats

from simulator import _kernels as K
from simulator import _rng
from simulator.samples import normal_mask, pick_event_points

MASK64 = (1 << 64) - 1


def ref_splitmix64(x: int) -> int:
    z = x & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def ref_uniform(seed: int, t: int, k: int) -> float:
    counter = t * 40 + k + 1
    z = ref_splitmix64((seed + counter * 0x9E3779B97F4A7C15) & MASK64)
    return ((z >> 11) + 0.5) / 2.0**53


@given(st.integers(0, 2**64 - 1), st.integers(0, 10**7), st.integers(0, 39))
def test_uniform_matches_reference_splitmix64(seed, t, k):
    assert _rng.uniform(np.uint64(seed), t, k) == ref_uniform(seed, t, k)


def test_uniform_and_normal_are_distributed_right():
    seed = _rng.host_seeds(5, 0, 1)[0]
    u = np.array([_rng.uniform(seed, t, 3) for t in range(20000)])
    z = np.array([_rng.normal(seed, t, 4) for t in range(20000)])
    assert 0 < u.min() and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_host_seeds_depend_on_global_index_only():
    whole = _rng.host_seeds(9, 0, 10)
    part = _rng.host_seeds(9, 4, 3)
    assert np.array_equal(whole[4:7], part)
    assert len(set(whole.tolist())) == 10
    assert not np.array_equal(whole, _rng.host_seeds(10, 0, 10))


@given(st.floats(0.0, 200.0), st.floats(0.0, 64.0), st.floats(1.0, 3600.0))
def test_damped_load_matches_linux_formula(load, runnable, dt):
    decay = math.exp(-dt / 60.0)
    assert K.damped_load(load, runnable, decay) == pytest.approx(load * decay + runnable * (1 - decay))


@given(st.floats(-1e4, 1e4), st.sampled_from([0.001, 0.01, 0.1, 1.0, 0.034]))
def test_quantize_rounds_to_the_resolution_grid(x, res):
    q = K.quantize(x, res)
    assert abs(q - x) <= res / 2 + 1e-9
    assert abs(q / res - round(q / res)) < 1e-6


@given(st.floats(0.01, 29.0), st.floats(0.001, 0.999))
def test_poisson_inverse_cdf_matches_scipy(lam, u):
    assert K.poisson_from_uniform(lam, u, 0.0) == stats.poisson.ppf(u, lam)


def ref_heap_substeps(heap, floor_level, alloc, young_at, n_sub=20000):
    """Naive sawtooth: allocate in tiny increments and collect at the threshold."""
    collections = 0
    for _ in range(n_sub):
        heap += alloc / n_sub
        if heap >= young_at:
            heap = floor_level + (heap - young_at)
            collections += 1
    return heap, collections


@given(st.floats(20, 40), st.floats(0, 400), st.floats(60, 90))
def test_heap_sawtooth_matches_substepped_reference(floor_level, alloc, young_at):
    heap0 = floor_level + 5.0
    jvm = K.Jvm(alloc=0.0, young_at=young_at, full_at=99.0, floor=floor_level, creep=0.0, young_ms=50.0,
                full_ms=1000.0, dt=300.0, alloc_spread=0.0)
    heap, floor_out, gc, n = K.step_heap(heap0, floor_level, alloc, jvm, K.NO_CHANNELS, 0.5, 0.5)
    ref_heap, ref_n = ref_heap_substeps(heap0, floor_level, alloc, young_at)
    assert heap == pytest.approx(ref_heap, abs=0.05)
    assert gc == pytest.approx(ref_n * 50.0 / 300000.0, abs=50.0 / 300000.0 + 1e-12)
    assert floor_level <= heap < young_at
    assert n == ref_n


def test_heap_storm_pins_heap_and_gc():
    jvm = K.Jvm(alloc=0.0, young_at=80.0, full_at=70.0, floor=30.0, creep=0.0, young_ms=50.0, full_ms=1000.0, dt=300.0,
                alloc_spread=0.0)
    heap, _, gc, _ = K.step_heap(50.0, 30.0, 100.0, jvm, K.NO_CHANNELS._replace(gc_storm=0.6), 0.5, 0.5)
    assert heap >= 95.0 and gc >= 0.55


def test_jobs_queue_respects_slots_and_daemon_down():
    scheduler = K.Scheduler(job_lambda=0.0, done_frac=0.2, slots=16.0, daemons=0.0, daemon_p=0.0, dt=300.0,
                            length_scale=600.0, length_shape=1.0, per_job_cpu=2.0, height_sigma=0.2, ramp_s=60.0,
                            ramp_decay=math.exp(-5.0), ramp_mean=0.2 * (1.0 - math.exp(-5.0)), per_job_mem=1.0,
                            ws_sigma=0.3, mem_ramp_s=120.0, mem_decay=math.exp(-2.5))
    five = K.Jobs(5.0, 0.0, 10.0, 10.0, 5.0, 5.0, 600.0)
    jobs, cpu = K.step_jobs(five, 100.0, scheduler, np.uint64(3), 7, 0.0, False, K.NO_CHANNELS)
    assert jobs.running == 16.0 and jobs.pending > 0 and cpu > 0.0
    jobs, cpu = K.step_jobs(five._replace(pending=2.0), 3.0, scheduler, np.uint64(3), 7, 0.0, False,
                            K.NO_CHANNELS._replace(daemon_down=True))
    assert (jobs.running, jobs.pending, jobs.height, jobs.memory, cpu) == (0.0, 5.0, 0.0, 0.0, 0.0)


def test_pick_event_points_and_normal_mask_match_numpy():
    rng = np.random.default_rng(0)
    labels = np.full((3, 2, 50), -1, np.int32)
    labels[0, 0, 10:15] = 0
    labels[2, 0, 12:20] = 0
    labels[1, 1, 30:33] = 1
    picks = pick_event_points(labels, np.array([0, 1]), np.array([10, 30]), np.array([10, 5]),
                              np.array([0, 1]), np.array([0, 0]), np.array([0, 0]), rng.random(2), 0)
    assert 10 <= picks[0] < 15           # primary metric 0 carries event 0 there
    assert 30 <= picks[1] < 33           # event 1 only on metric 1: falls back to any metric
    u = np.linspace(0.0, 0.999, 50)
    late = [pick_event_points(labels, np.array([0, 1]), np.array([10, 30]), np.array([10, 5]), np.array([0, 1]),
                              np.array([0, 0]), np.array([3, 9]), np.array([x, x]), 0) for x in u]
    assert {int(p[0]) for p in late} == {13, 14}      # primary metric's steps at least 3 after the start
    assert {int(p[1]) for p in late} == {30, 31, 32}  # no step 9 after the start: any labelled step
    assert np.array_equal(normal_mask(labels), ~(labels >= 0).any(axis=0))


@given(st.floats(1e-9, 1 - 1e-9), st.floats(0.0, 1.0), st.floats(0.0, 1e4))
def test_transfer_burst_matches_lomax_reference(u, p, scale):
    expected = 0.0 if u >= p else scale * min((1 - u / p) ** (-1 / K.BURST_TAIL_ALPHA) - 1,
                                              K.BURST_MAX)
    assert K.transfer_burst(u, p, scale) == pytest.approx(expected, rel=1e-12, abs=0)


def test_transfer_burst_sizes_are_heavy_tailed_and_rate_is_p():
    u = (np.arange(200_000) + 0.5) / 200_000
    sizes = np.array([K.transfer_burst(x, 0.05, 1.0) for x in u])
    started = sizes > 0
    assert started.mean() == pytest.approx(0.05, abs=1e-4)
    big = sizes[started]
    # a Lomax tail: the largest transfers are tens of times the typical one
    assert big.max() > 20 * np.median(big)
