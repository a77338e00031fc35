"""The JVM at one second (issue 18 item 5), on the kernel's traces without anomalies: young collections
at irregular times every few to tens of seconds, allocation that moves with the CPU, a sawtooth
between the old generation and the young threshold, an old generation that creeps to a mixed/full
collection, and GC time in a realistic share of seconds (targets in data_config/metrics.yaml, heap_*).
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator.catalogue import METRICS, P
from simulator.engine import run_kernel
from simulator.events import plan_events
from simulator.population import build_population

M = {m: i for i, m in enumerate(METRICS)}
HOSTS = 24
STEPS = 1800  # 30 minutes at one second
BUSY = "jvm_app_server"


def fine_traces(config, seed, creep_per_hour=None):
    """(heap [H, T], GC % [H, T], CPU [H, T], params, busy-host mask) at one second, no anomalies."""
    population = build_population(config, HOSTS, seed)
    if creep_per_hour is not None:
        population.params[:, P["heap_floor_creep_per_hour"]] = creep_per_hour
    plan = plan_events(config, population, 0, STEPS, seed=seed, interval_s=1.0)
    traces, _ = run_kernel(config, population, plan, seed=seed, n_steps=STEPS, interval_s=1.0, keep_base=False)
    busy = np.array(population.profile_names)[population.profile] == BUSY
    assert busy.sum() >= 4
    v = traces.values.astype(np.float64)
    return v[M["java_heap_usage"]], v[M["java_gc_time"]], v[M["cpu_usage"]], population.params, busy


@pytest.fixture(scope="module", params=[1, 2])
def fine(config, request):
    return fine_traces(config, request.param)


def test_young_collections_come_every_few_seconds_at_irregular_times(fine):
    heap, gc, _, _, busy = fine
    intervals, cvs = [], []
    for h in np.flatnonzero(busy):
        dt = np.diff(np.flatnonzero(gc[h] > 0))
        intervals.append(np.median(dt))
        cvs.append(dt.std() / dt.mean())
    # G1 on a busy service: a young collection every few seconds to tens of seconds
    assert 2.0 <= np.median(intervals) <= 30.0, intervals
    assert max(intervals) <= 60.0, intervals
    # triggered by occupancy with a jittered young space and a varying allocation: not a metronome
    assert np.median(cvs) > 0.15, cvs
    assert min(cvs) > 0.08, cvs


def test_gc_time_is_nonzero_in_a_realistic_share_of_seconds(fine):
    _, gc, _, _, busy = fine
    share = np.mean(gc[busy] > 0, axis=1)
    assert 0.05 <= np.median(share) <= 0.5, share
    # and a collection's pause is tens of milliseconds, varying from one to the next
    spread = []
    for h in np.flatnonzero(busy):
        pauses = gc[h][gc[h] > 0] * 10.0  # ms in a one-second interval
        assert 5.0 <= np.median(pauses) <= 100.0
        p10, p90 = np.percentile(pauses, [10, 90])
        spread.append(p90 / p10)
    assert np.median(spread) > 1.5, spread


def test_allocation_moves_with_the_cpu(fine):
    """Seconds that allocate more also compute more: the heap's rise between collections correlates
    with the CPU of the same second."""
    heap, gc, cpu, _, busy = fine
    corr = []
    for h in np.flatnonzero(busy):
        quiet = (gc[h, 1:] == 0)  # no collection in the second: the heap's rise is the allocation
        rise = np.diff(heap[h])[quiet]
        corr.append(np.corrcoef(rise, cpu[h, 1:][quiet])[0, 1])
        # the rise is not a constant slope
        assert rise.std() / rise.mean() > 0.2
    assert np.median(corr) > 0.6, corr


def test_heap_is_a_sawtooth_between_the_old_generation_and_the_young_threshold(fine):
    heap, gc, _, params, busy = fine
    for h in np.flatnonzero(busy):
        at = np.flatnonzero(gc[h, 1:] > 0) + 1
        before, after = heap[h, at - 1], heap[h, at]
        young_at, full_at = params[h, P["heap_young_threshold"]], params[h, P["heap_full_gc_at"]]
        alloc = params[h, P["heap_alloc_pct_per_s"]]
        # a collection empties the young space: the heap drops to the old generation plus what the
        # rest of the second allocated, never above where the old generation is collected
        assert np.all(after < before)
        assert np.all(after <= full_at + 4.0 * alloc + 0.1)
        # peaks sit around the young threshold (its jitter), never at the floor
        assert young_at - 25.0 < np.median(before) < young_at + 15.0
        assert np.median(before - after) > 20.0
        # and never past G1's reserve: a young collection runs by 90 % at the latest
        assert heap[h].max() <= 90.05


def test_the_old_generation_creeps_to_a_mixed_collection(config):
    """With promotion fast enough to fill the old generation within the trace, the troughs after young
    collections climb to where the old generation is collected; that collection (its pause in the
    second's GC time) drops the heap back to the floor."""
    heap, gc, _, params, busy = fine_traces(config, 3, creep_per_hour=150.0)
    for h in np.flatnonzero(busy):
        floor, full_at = params[h, P["heap_floor"]], params[h, P["heap_full_gc_at"]]
        full_pct = min(params[h, P["gc_full_pause_ms"]] / 10.0, 100.0)  # a full pause in one second, percent
        resets = np.flatnonzero(gc[h] >= 0.5 * full_pct)
        assert len(resets), gc[h].max()
        first = resets[0]
        # the troughs after young collections climb until then
        at = np.flatnonzero(gc[h, 1:first] > 0) + 1
        troughs = heap[h, at]
        third = max(len(troughs) // 3, 1)
        assert np.mean(troughs[-third:]) > np.mean(troughs[:third]) + 5.0, troughs
        # where the old generation is collected: from above its threshold back to the floor
        assert np.all(heap[h, resets - 1] >= full_at - 0.1)
        assert np.all(heap[h, resets] < floor + 25.0)
        assert np.all(heap[h, resets] < heap[h, resets - 1] - 10.0)
