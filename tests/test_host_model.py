"""Coupling in the host model: what one subsystem's trouble does to the others, checked on the
kernel's traces with and without the anomaly, and in the explanations written from them.

Each test is an observable consequence a one-line breakage would remove: packet processing at a
saturated link costs CPU (softirq), GC threads cost CPU, a GC storm stalls the jobs, and an
explanation's earlier and usual levels are the sample's past, not its present.  Then the kernel
against its plain-Python reference (tests/host_reference.py), and cpu_spike's estimate of the CPU
spread against the kernel's.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import polars as pl
import pytest
from host_reference import simulate_host as reference_host

from simulator import _kernels as K
from simulator._rng import host_seeds
from simulator.api import generate_samples
from simulator.catalogue import C_DAEMON_DOWN, C_GC_STORM, METRICS, P
from simulator.engine import run_kernel
from simulator.events import plan_events
from simulator.population import build_population

STEPS = 576  # 2 days at 5 minutes
HOSTS = 16
M = {m: i for i, m in enumerate(METRICS)}


def single_kind(config, kind):
    """The shipped config with only one anomaly kind."""
    spec = dataclasses.replace(config.anomaly(kind), share=1.0)
    return dataclasses.replace(config, anomalies=(spec,))


def one_event_per_host(config, kind, seed, busy_jobs=False):
    """(values with the events, values without, events, host parameters, CPU bounds) for HOSTS hosts;
    with `busy_jobs`, jobs arrive at a rate that keeps about half of each host's slots running."""
    cfg = single_kind(config, kind)
    interval = cfg.simulation.interval_s
    population = build_population(cfg, HOSTS, seed)
    if busy_jobs:
        hp = population.params
        hp[:, P["job_rate_per_hour"]] = 0.5 * hp[:, P["job_slots"]] * 60.0 / hp[:, P["job_minutes"]]
    plan = plan_events(cfg, population, HOSTS, STEPS, seed=seed, interval_s=interval)
    traces, events = run_kernel(cfg, population, plan, seed=seed, n_steps=STEPS, interval_s=interval)
    assert set(events["kind"].to_list()) == {kind}
    cpu = cfg.metric("cpu_usage")
    return traces.values.astype(np.float64), traces.base.astype(np.float64), events, population.params, cpu


def event_points(events) -> tuple[np.ndarray, np.ndarray]:
    """(host, step) of every step inside an event window."""
    hosts, steps = [], []
    for ev in events.iter_rows(named=True):
        s = np.arange(ev["start_step"], ev["end_step"])
        hosts.append(np.full(len(s), ev["host"]))
        steps.append(s)
    return np.concatenate(hosts), np.concatenate(steps)


@pytest.mark.parametrize("seed", [3, 8])
def test_a_saturated_link_costs_cpu_in_packet_processing(config, seed):
    """Where congestion holds the link at its capacity plateau (>= 94 % of the link), the host's CPU
    is higher than the same host's without the congestion: softirq work grows with the load."""
    values, base, events, params, cpu = one_event_per_host(config, "network_congestion", seed)
    h, t = event_points(events)
    link = params[h, P["link_mbps"]]
    net_in, net_base = values[M["network_in_mbps"], h, t], base[M["network_in_mbps"], h, t]
    cpu_with, cpu_without = values[M["cpu_usage"], h, t], base[M["cpu_usage"], h, t]
    saturated = (net_in >= 0.94 * link) & (net_base < 0.5 * link) & (cpu_with < cpu.upper)
    assert saturated.sum() > 20
    extra = cpu_with[saturated] - cpu_without[saturated]
    # at rho >= 0.94 the softirq share is at least 8 % * 0.14 = 1.1 % of CPU, more than one resolution step
    assert np.all(extra > 0.0), extra.min()
    assert np.median(extra) > 1.0


@pytest.mark.parametrize("seed", [3, 8])
def test_gc_time_costs_cpu(config, seed):
    """In a GC storm the CPU rises by what the GC threads and the (stalled) jobs add: each percent of
    time in GC costs GC_CPU_PCT / 100 percent of CPU, each job about job_cpu (a job has its own height
    and a partial last point; on these service hosts jobs add 0.1-0.3 %, inside the tolerance), scaled
    by the collector's read factor 1 +- 2 sqrt(3) cpu_read_jitter."""
    values, base, events, params, cpu = one_event_per_host(config, "jvm_gc_storm", seed)
    h, t = event_points(events)
    cpu_with, cpu_without = values[M["cpu_usage"], h, t], base[M["cpu_usage"], h, t]
    inside = (cpu_with < cpu.upper) & (cpu_without < cpu.upper) & (cpu_with > cpu.lower) & (cpu_without > cpu.lower)
    gc_extra = values[M["java_gc_time"], h, t] - base[M["java_gc_time"], h, t]
    job_extra = values[M["spectrum_active_jobs"], h, t] - base[M["spectrum_active_jobs"], h, t]
    expected = gc_extra * K.GC_CPU_PCT / 100.0 + job_extra * params[h, P["job_cpu"]]
    read_error = 2.0 * math.sqrt(3.0) * params[h, P["cpu_read_jitter"]]
    # a job's own height (lognormal around job_cpu), and the partial point of a job that started or ended
    # inside the step in one run only (the counts at the step's end agree): up to twice job_cpu
    job_error = 2.0 * (np.abs(job_extra) + 1.0) * params[h, P["job_cpu"]]
    tolerance = (np.abs(expected) * read_error + 2.0 * params[h, P["cpu_resolution"]] + 0.01 * K.GC_CPU_PCT / 100.0
                 + job_error)
    extra = cpu_with - cpu_without
    assert inside.sum() > 50
    bad = inside & (np.abs(extra - expected) > tolerance + 1e-9)
    assert not bad.any(), (extra[bad][:5], expected[bad][:5])
    # and the GC's own share is there, whatever the constant says: CPU beyond the jobs' part is at
    # least a fifth of the added GC time
    stormy = inside & (gc_extra > 20.0)
    assert stormy.sum() > 20
    beyond_jobs = extra[stormy] - job_extra[stormy] * params[h[stormy], P["job_cpu"]]
    assert np.median(beyond_jobs / gc_extra[stormy]) > 0.2


@pytest.mark.parametrize("seed", [3, 8])
def test_gc_storm_stalls_jobs(config, seed):
    """No job completes while the JVM collects back to back (the storm phase of the window, between
    the onset where the old generation fills and the recovery): from the step before it to its end
    the running count never falls, and jobs pile up above the same host's without the storm."""
    values, base, events, params, _ = one_event_per_host(config, "jvm_gc_storm", seed, busy_jobs=True)
    cfg = single_kind(config, "jvm_gc_storm")
    population = build_population(cfg, HOSTS, seed)
    population.params[:, P["job_rate_per_hour"]] = params[:, P["job_rate_per_hour"]]
    plan = plan_events(cfg, population, HOSTS, STEPS, seed=seed, interval_s=cfg.simulation.interval_s)
    jobs, jobs_base = values[M["spectrum_active_jobs"]], base[M["spectrum_active_jobs"]]
    piled_up = 0
    for ev in events.iter_rows(named=True):
        rows = slice(plan.profile_row[ev["event_id"]], plan.profile_row[ev["event_id"]] + plan.length[ev["event_id"]])
        storm = np.flatnonzero(plan.profiles[rows, C_GC_STORM] > 0.0)
        assert len(storm) > 0 and np.all(np.diff(storm) == 1), ev   # one storm phase per event
        start, end = ev["start_step"] + storm[0], ev["start_step"] + storm[-1] + 1
        window = jobs[ev["host"], max(start - 1, 0):end]
        assert np.all(np.diff(window) >= 0), (ev, window)
        assert np.all(jobs[ev["host"], start:end] >= jobs_base[ev["host"], start:end])
        piled_up += jobs[ev["host"], end - 1] > jobs_base[ev["host"], end - 1]
    assert piled_up >= HOSTS // 2


# ---------------------------------------------------------------------------- explanations
@pytest.fixture(scope="module")
def spike_samples(config):
    cfg = single_kind(config, "cpu_spike")
    return generate_samples(240, anomaly_ratio=0.75, seed=7, config=cfg).samples


EARLIER = re.compile(r"It was ([\d.]+)% (\d+) minutes ago\.")
USUAL = re.compile(r"cpu_usage is ([\d.]+)%, (?:up from|down from|the same as) its median of ([\d.]+)% "
                   r"over the previous (\d+) (hours|minutes)")


def _past_cpu(row: dict) -> tuple[list[float], list[float]]:
    """(the earlier context readings, the completed hours of history) of a sample, as float32 values."""
    ctx = [float(np.float32(v)) for v in row["ctx_cpu_usage"][:-1] if v is not None and not math.isnan(v)]
    hist = [float(np.float32(v)) for v in row["hist_cpu_usage"][:-1] if v is not None and not math.isnan(v)]
    return ctx, hist


def test_explanations_quote_the_past_cpu_not_the_present(spike_samples):
    """A spike's explanation names the CPU of 55 minutes ago (the context's first reading) and the
    median of the past hours; neither is the snapshot's CPU, which the spike has moved."""
    spikes = spike_samples.filter(pl.col("kind") == "cpu_spike")
    earlier_checked = usual_checked = 0
    for row in spikes.iter_rows(named=True):
        text, now = row["explanation"], float(np.float32(row["cpu_usage"]))
        ctx, hist = _past_cpu(row)
        for earlier, _minutes in EARLIER.findall(text):
            assert float(earlier) == pytest.approx(round(float(np.float32(row["ctx_cpu_usage"][0])), 1), abs=1e-9), text
            earlier_checked += 1
        for printed_now, usual, span, unit in USUAL.findall(text):
            past = hist if unit == "hours" else ctx
            assert int(span) == (len(past) if unit == "hours" else 5 * len(past)), text
            assert float(usual) == pytest.approx(round(float(np.median(past)), 1), abs=1e-9), text
            assert float(printed_now) == pytest.approx(round(now, 1), abs=1e-9), text
            usual_checked += 1
    assert earlier_checked >= 20 and usual_checked >= 40
    # the spikes did move the CPU: in most texts the earlier and usual levels differ from the snapshot
    differs = spikes.filter(pl.col("explanation").str.contains("It was ")).select(
        (pl.col("ctx_cpu_usage").arr.first().round(1) != pl.col("cpu_usage").round(1)).mean()).item()
    assert differs > 0.8


# ---------------------------------------------------------------------------- the plain-Python reference
def channels_of(plan, events, host: int, t0: int, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The perturbation inputs the kernel saw on one host: (chan [step, channel], covered [step])."""
    chan = np.zeros((n_steps, plan.profiles.shape[1]))
    covered = np.zeros(n_steps, bool)
    for ev in events.filter(pl.col("host") == host).iter_rows(named=True):
        e = ev["event_id"] - plan.first_id
        for j in range(int(plan.length[e])):
            i = ev["start_step"] + j - t0
            if 0 <= i < n_steps:
                chan[i] += plan.profiles[plan.profile_row[e] + j]
                covered[i] = True
    return chan, covered


@pytest.fixture(scope="module")
def small_run(config):
    """Every kind on 8 hosts over 300 steps, run by the kernel."""
    seed, hosts, steps = 21, 8, 300
    interval = config.simulation.interval_s
    population = build_population(config, hosts, seed)
    plan = plan_events(config, population, 16, steps, seed=seed, interval_s=interval)
    traces, events = run_kernel(config, population, plan, seed=seed, n_steps=steps, interval_s=interval)
    return config, population, plan, traces, events, seed


def _reference(config, population, plan, events, seed, host, t0, n_steps, state=None, interval=None):
    chan, covered = channels_of(plan, events, host, t0, n_steps)
    res = [m.resolution for m in config.metrics]
    lower, upper = [m.lower for m in config.metrics], [m.upper for m in config.metrics]
    return reference_host(int(host_seeds(seed, host, 1)[0]), population.params[host], chan, covered, res, lower,
                         upper, t0=t0, n_steps=n_steps, dt=interval or config.simulation.interval_s,
                         start_epoch=config.simulation.start_epoch_s, state=state)


def test_the_kernel_matches_the_plain_python_reference(small_run):
    """Every metric point of every host, with and without the anomalies, as the float32 the kernel
    stores; the end state within float64 rounding."""
    config, population, plan, traces, events, seed = small_run
    assert len(events) == 16 and events["kind"].n_unique() == len(config.anomalies)
    for host in range(population.n_hosts):
        with_anomalies, without, end_state = _reference(config, population, plan, events, seed, host, 0,
                                                         traces.n_steps)
        for m, name in enumerate(METRICS):
            np.testing.assert_array_equal(traces.values[m, host], np.float32(with_anomalies[m]), err_msg=(host, name))
            np.testing.assert_array_equal(traces.base[m, host], np.float32(without[m]), err_msg=(host, name))
        np.testing.assert_allclose(traces.end_state[host], end_state, rtol=1e-12, atol=1e-12)


def test_the_kernel_matches_the_reference_at_10_seconds(config):
    """At 10 s a crashed daemon's children come back over several steps (the daemon channel below 1):
    the kernel matches the reference there too, every kind present."""
    seed, hosts, steps, interval = 23, 8, 400, 10.0
    population = build_population(config, hosts, seed)
    plan = plan_events(config, population, 16, steps, seed=seed, interval_s=interval)
    traces, events = run_kernel(config, population, plan, seed=seed, n_steps=steps, interval_s=interval)
    daemon = plan.profiles[:, C_DAEMON_DOWN]
    assert ((daemon > 0.0) & (daemon < 1.0)).sum() >= 3   # restarts in progress are exercised
    for host in range(hosts):
        with_anomalies, without, _ = _reference(config, population, plan, events, seed, host, 0, steps,
                                                interval=interval)
        for m, name in enumerate(METRICS):
            np.testing.assert_array_equal(traces.values[m, host], np.float32(with_anomalies[m]), err_msg=(host, name))
            np.testing.assert_array_equal(traces.base[m, host], np.float32(without[m]), err_msg=(host, name))


def test_the_kernel_continues_from_a_state_as_the_reference_does(small_run):
    """A second chunk of steps started from the first chunk's end state."""
    config, population, plan, traces, events, seed = small_run
    interval = config.simulation.interval_s
    later = plan_events(config, population, 0, 200, seed=seed, interval_s=interval)
    second, _ = run_kernel(config, population, later, seed=seed, n_steps=200, interval_s=interval, t0=traces.n_steps,
                           state=traces.end_state)
    for host in (0, 5):
        _, _, state = _reference(config, population, plan, events, seed, host, 0, traces.n_steps)
        _, without, _ = _reference(config, population, later, pl.DataFrame(schema=events.schema), seed, host,
                                   traces.n_steps, 200, state=state)
        for m, name in enumerate(METRICS):
            np.testing.assert_array_equal(second.values[m, host], np.float32(without[m]), err_msg=(host, name))


@pytest.mark.parametrize(("interval", "profiles"), [(300.0, ("idle", "batch_compute")), (60.0, ("idle",))])
def test_the_cpu_spike_size_follows_the_kernels_cpu_spread(config, interval, profiles):
    """cpu_spike sizes its events in host sigmas from an analytic account of the kernel's CPU standard
    deviation (`spread.cpu_sigma`, from the host's parameters and the kernel's constants): over 14
    days without anomalies, at 5 minutes and at 1 minute, the kernel's own spread agrees with it in
    the median, overall and on the profiles whose spread comes from the stationary parts (idle: the
    reporting resolution, agent runs and its JVM; batch: the jobs, at 5 minutes only: at finer
    intervals the kernel's job completions, a rounded normal, finish fewer jobs than job_minutes says)."""
    from simulator.spread import cpu_sigma

    hosts, seed = 200, 1
    steps = int(14 * 86400 / interval)
    population = build_population(config, hosts, seed)
    plan = plan_events(config, population, 0, steps, seed=seed, interval_s=interval)
    traces, _ = run_kernel(config, population, plan, seed=seed, n_steps=steps, interval_s=interval, keep_base=False)
    ratio = traces.host_std[M["cpu_usage"]] / cpu_sigma(population.params, interval, horizon_days=14.0)
    assert 0.85 < np.median(ratio) < 1.15
    for profile in profiles:
        on = population.profile == population.profile_names.index(profile)
        assert on.sum() >= 20 and 0.85 < np.median(ratio[on]) < 1.2, (profile, np.median(ratio[on]))



@pytest.mark.parametrize("interval", [60.0, 120.0, 300.0])
def test_the_periodic_jobs_cpu_variance_is_the_kernels(config, interval):
    """spread.periodic_var against the variance of the kernel's own periodic_share over a trace, for
    every period and whole-minute offset alike: runs split between steps count with their squared
    shares (a bound on them overshot by up to 1.4x at 2 minutes)."""
    from simulator.catalogue import N_PARAMS
    from simulator.spread import _size_moments, periodic_var

    runs = np.array([60.0, 87.5, 150.0])
    mean, square = _size_moments(K.PERIODIC_SIZE)
    exact = np.zeros(len(runs))
    for i, run in enumerate(runs):
        for minutes in K.PERIODS_MINUTES:
            period = 60.0 * minutes
            n = int(round(4 * period / interval))
            per_offset = []
            for at in np.arange(0.0, period, 60.0):
                cpu = K.CpuDemand(*([0.0] * 18), 1.0, period, at, min(run, 0.5 * period))
                on = np.array([K.periodic_share(config.simulation.start_epoch_s + k * interval, interval, cpu)
                               for k in range(n)])
                per_offset.append(square * np.mean(on ** 2) - (mean * np.mean(on)) ** 2)
            exact[i] += np.mean(per_offset) / len(K.PERIODS_MINUTES)
    hp = np.zeros((len(runs), N_PARAMS))
    hp[:, P["cpu_periodic_share"]], hp[:, P["cpu_level"]], hp[:, P["cpu_periodic_seconds"]] = 1.0, 1.0, runs
    np.testing.assert_allclose(periodic_var(hp, interval), exact, rtol=0.01)


@pytest.mark.parametrize("interval", [1.0, 60.0, 300.0, 3600.0])
def test_the_hourly_cron_adds_its_5_minute_average_at_any_interval(config, interval):
    """cpu_cron_amplitude is the burst's 5-minute average: over 12 hours the CPU a host's cron adds is
    amplitude x 300 / 3600 on average whatever the interval (one step of the amplitude would add a
    fifth of it at 1 minute and twelve times it at 1 hour)."""
    from simulator.population import Population

    hosts, steps = 16, int(12 * 3600 / interval)
    population = build_population(config, hosts, 5)
    mean_cpu = []
    for prob in (1.0, 0.0):
        params = population.params.copy()
        params[:, P["cpu_cron_prob"]] = prob
        with_prob = Population(population.profile, params, population.profile_names)
        plan = plan_events(config, with_prob, 0, steps, seed=5, interval_s=interval)
        traces, _ = run_kernel(config, with_prob, plan, seed=5, n_steps=steps, interval_s=interval)
        mean_cpu.append(traces.base[METRICS.index("cpu_usage")].astype(np.float64).mean(axis=1))
    added = mean_cpu[0] - mean_cpu[1]
    expected = population.params[:, P["cpu_cron_amplitude"]] * 300.0 / 3600.0
    assert np.sum(added) / np.sum(expected) == pytest.approx(1.0, abs=0.12)

# ---------------------------------------------------------------------------- batch jobs (issue 18 item 1)
def _scheduler(*, shape=1.0, height_sigma=0.3, ws_sigma=0.5, dt=300.0, minutes=20.0):
    """A scheduler record of one host with one slot, no arrivals of its own."""
    ramp_s, mem_ramp_s = 60.0, 300.0
    ramp_decay = math.exp(-dt / ramp_s)
    return K.Scheduler(0.0, 1.0 - math.exp(-dt / (60.0 * minutes)), 1.0, 5.0, 0.0, dt,
                       60.0 * minutes / math.gamma(1.0 + 1.0 / shape), shape, 50.0, height_sigma, ramp_s, ramp_decay,
                       ramp_s / dt * (1.0 - ramp_decay), 5.0, ws_sigma, mem_ramp_s, math.exp(-dt / mem_ramp_s))


def _one_job_each(scheduler, seed=11, jobs=400):
    """Start one job at a time and run it to its end: per job (CPU height, working set, run steps,
    CPU of its first point, of its second)."""
    out, t = [], 0
    for _ in range(jobs):
        state, first = K.step_jobs(K.Jobs(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), 1.0, scheduler, np.uint64(seed), t,
                                   0.0, False, K.NO_CHANNELS)
        height, working_set, steps, second = state.height, state.working_set, 1, None
        while state.running > 0.0:
            t += 1
            z_done = float(np.random.default_rng(t).normal())
            state, cpu = K.step_jobs(state, 0.0, scheduler, np.uint64(seed), t, z_done, False, K.NO_CHANNELS)
            second = cpu if second is None else second
            steps += 1
        out.append((height, working_set, steps, first, second))
        t += 1
    return np.array(out, dtype=float)


def test_each_job_has_its_own_height_and_working_set():
    """Heights and working sets are drawn per job (log std as configured, mean job_cpu / job_mem) and
    apart from each other: memory is not a copy of the CPU box."""
    jobs = _one_job_each(_scheduler())
    height, working_set = jobs[:, 0], jobs[:, 1]
    assert np.std(np.log(height)) == pytest.approx(0.3, rel=0.15)
    assert np.std(np.log(working_set)) == pytest.approx(0.5, rel=0.15)
    assert np.mean(height) == pytest.approx(50.0, rel=0.06)
    assert abs(np.corrcoef(np.log(height), np.log(working_set))[0, 1]) < 0.15


def test_jobs_start_within_an_interval_and_ramp_up():
    """A job's first 5-minute point is a uniform part of the interval (and its ramp), below its
    second; the CPU it adds over its first step averages about half its height."""
    jobs = _one_job_each(_scheduler(minutes=30.0))
    ran = jobs[:, 2] >= 3
    first, second, height = jobs[ran, 3], jobs[ran, 4], jobs[ran, 0]
    assert np.all(first < second)
    assert 0.3 < np.mean(first / height) < 0.5  # (1 - late) less the ramp's minute: 0.5 - 0.2
    assert np.std(first / height) > 0.2


def test_weibull_run_times_are_more_regular_than_exponential():
    """With a length shape above 1 the run times bunch around job_minutes (NAB's batch hosts run jobs
    of 3-4 points again and again); shape 1 is the exponential."""
    exponential = _one_job_each(_scheduler(shape=1.0), jobs=300)[:, 2]
    regular = _one_job_each(_scheduler(shape=3.0), jobs=300)[:, 2]
    cv = lambda x: np.std(x) / np.mean(x)  # noqa: E731
    assert cv(regular) < 0.6 * cv(exponential)
    assert np.mean(regular) == pytest.approx(np.mean(exponential), rel=0.2)
