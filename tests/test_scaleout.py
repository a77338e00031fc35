"""Sharded trace jobs: continuous across time chunks, complete, and the same bytes on every engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from simulator import simulate
from simulator.config import load_config
from simulator.engine import run_kernel
from simulator.events import plan_events
from simulator.population import build_population
from simulator import scaleout, shards
from simulator.errors import SimulatorError
from simulator.scaleout import MANIFEST, anomalous_share, check_sharded, open_traces, run_job
from simulator.shards import make_job, run_host_range
from simulator.staging import events_table

ROOT = Path(__file__).resolve().parents[1]
CONFIG = load_config()
METRICS = [m.name for m in CONFIG.metrics]


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _parts(folder: Path) -> pl.DataFrame:
    return open_traces(folder).read("traces").sort("host", "step")


def _events(folder: Path) -> pl.DataFrame:
    return open_traces(folder).read("events").sort("event_id")


@pytest.mark.parametrize("cut", [1, 137, 400])
def test_state_carries_across_chunks(cut):
    """Without events, a trace computed in two chunks is bit for bit the trace computed at once."""
    seed, hosts, steps, dt = 11, 12, 500, 300.0
    pop = build_population(CONFIG, hosts, seed)
    plan = plan_events(CONFIG, pop, 0, steps, seed=seed, interval_s=dt)
    whole, _ = run_kernel(CONFIG, pop, plan, seed=seed, n_steps=steps, interval_s=dt, keep_base=False)
    a, _ = run_kernel(CONFIG, pop, plan, seed=seed, n_steps=cut, interval_s=dt, keep_base=False)
    b, _ = run_kernel(CONFIG, pop, plan, seed=seed, n_steps=steps - cut, interval_s=dt, t0=cut, keep_base=False,
                      state=a.end_state)
    np.testing.assert_array_equal(np.concatenate([a.values, b.values], axis=2), whole.values)
    np.testing.assert_array_equal(b.end_state, whole.end_state)


def test_one_chunk_job_is_the_unsharded_run(tmp_path):
    """With one time chunk, the parts hold exactly `simulate`'s traces, labels and events."""
    job = make_job(CONFIG, 20, 300, 3, anomalies=25, shard_hosts=6)
    run_job(job, tmp_path / "out")
    traces, events = simulate(20, 300, seed=3, anomalies=25)
    parts = _parts(tmp_path / "out")
    assert parts.columns == traces.columns
    assert parts.equals(traces)
    assert _events(tmp_path / "out").equals(events_table(events.sort("event_id"), CONFIG))


def test_chunked_job_is_continuous_and_labels_its_events(tmp_path):
    job = make_job(CONFIG, 10, 900, 5, anomalies=0, shard_hosts=4, shard_steps=250)
    run_job(job, tmp_path / "quiet")
    traces, _ = simulate(10, 900, seed=5, anomalies=0)
    assert _parts(tmp_path / "quiet").select(METRICS).equals(traces.select(METRICS))

    job = make_job(CONFIG, 10, 900, 5, anomalies=17, shard_hosts=4, shard_steps=250)
    manifest = run_job(job, tmp_path / "out")
    events, parts = _events(tmp_path / "out"), _parts(tmp_path / "out")
    assert manifest["events"] == len(events) == 17
    assert events["event_id"].to_list() == list(range(17))
    chunk = events["start_step"] // 250
    assert ((events["end_step"] - 1) // 250 == chunk).all(), "an event crosses a chunk boundary"
    assert len(parts) == 10 * 900 and parts.select("host", "step").is_duplicated().sum() == 0
    labels = parts.select([pl.col(f"label_{m}") for m in METRICS]).to_numpy()
    assert set(np.unique(labels[labels >= 0])) <= set(range(17))
    for ev in events.filter(pl.col("labelled_first_step") >= 0).iter_rows(named=True):
        rows = parts.filter((pl.col("host") == ev["host"]) & pl.col("step").is_between(ev["start_step"],
                                                                                       ev["end_step"] - 1))
        hit = rows.select([pl.col(f"label_{m}") == ev["event_id"] for m in METRICS]).to_numpy().any(axis=1)
        assert hit.any(), f"event {ev['event_id']} has no labelled point inside its window"
        assert rows["is_anomaly"].to_numpy()[hit].all()
    assert not check_sharded(tmp_path / "out")


def test_sharded_job_sizes_each_chunks_events_to_the_anomaly_share(tmp_path):
    one = make_job(CONFIG, 8, 600, 2, anomaly_share=0.05, shard_hosts=3, interval_s=10)
    run_job(one, tmp_path / "one")
    traces, events = simulate(8, 600, seed=2, anomaly_share=0.05, interval_s=10)
    assert _parts(tmp_path / "one").equals(traces)   # one chunk: the unsharded run
    assert _events(tmp_path / "one").equals(events_table(events.sort("event_id"), CONFIG))
    job = make_job(CONFIG, 8, 2400, 2, anomaly_share=0.05, shard_hosts=3, shard_steps=600, interval_s=10)
    manifest = run_job(job, tmp_path / "out")
    events, parts = _events(tmp_path / "out"), _parts(tmp_path / "out")
    assert events["event_id"].to_list() == list(range(manifest["events"]))
    chunk = events["start_step"] // 600
    assert ((events["end_step"] - 1) // 600 == chunk).all() and chunk.n_unique() == 4
    assert abs(parts["is_anomaly"].mean() - 0.05) <= 0.01
    assert anomalous_share(tmp_path / "out") == parts["is_anomaly"].mean()
    with pytest.raises(SimulatorError, match="--anomalies, --anomaly-share"):
        make_job(CONFIG, 8, 600, 2, anomalies=3, anomaly_share=0.05)


def test_local_output_does_not_depend_on_threads(tmp_path):
    job = make_job(CONFIG, 16, 400, 9, shard_hosts=5, shard_steps=150)
    run_job(job, tmp_path / "one", workers=1)
    run_job(job, tmp_path / "two", workers=2)
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


def test_rerun_keeps_finished_ranges_and_drops_stray_files(tmp_path, monkeypatch):
    job = make_job(CONFIG, 16, 400, 9, shard_hosts=5, shard_steps=150)
    run_job(job, tmp_path / "ref")
    # an interrupted run: ranges 0 and 2 finished, range 1 half written, a worker's temporary file left
    from simulator import scaleout

    partial = tmp_path / "out.partial"
    partial.mkdir()
    (partial / scaleout.JOB_FILE).write_bytes(scaleout.job_marker(job))
    for r in (0, 2):
        for name in job.range_files(r):
            (partial / name).write_bytes((tmp_path / "ref" / name).read_bytes())
    (partial / job.part_name(1, 0)).write_bytes((tmp_path / "ref" / job.part_name(1, 0)).read_bytes())
    (partial / ".part-h00001-t00001.parquet.abc.tmp").write_bytes(b"half")
    computed = []
    real = scaleout.run_host_range
    monkeypatch.setattr(scaleout, "run_host_range", lambda j, r, d: computed.append(r) or real(j, r, d))
    run_job(job, tmp_path / "out")
    assert computed == [1, 3]
    assert _tree(tmp_path / "out") == _tree(tmp_path / "ref")
    assert not partial.exists()


@pytest.mark.parametrize("step", ["manifest.json:written", "manifest.json:renamed", "publish:retired",
                                  "publish:renamed", "publish:removing-old"])
def test_a_kill_while_publishing_is_finished_by_the_rerun(tmp_path, step):
    """SIGKILL at each step of the swap of <output>.partial for <output>: the rerun publishes the job."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def traces(out: Path, seed: int, kill: str | None = None) -> subprocess.CompletedProcess:
        run_env = {**env, "DATASAFE_KILL_AT": kill} if kill else env
        return subprocess.run([sys.executable, "-m", "simulator", "traces", "--hosts", "6", "--steps", "40",
                               "--shard-hosts", "2", "--seed", str(seed), "--quiet", "--output", str(out)],
                              env=run_env, capture_output=True, text=True, timeout=300)

    assert traces(tmp_path / "ref", 2).returncode == 0
    assert traces(tmp_path / "out", 1).returncode == 0   # a previous job's output, to be replaced
    killed = traces(tmp_path / "out", 2, kill=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    rerun = traces(tmp_path / "out", 2)
    assert rerun.returncode == 0, rerun.stderr
    assert _tree(tmp_path / "out") == _tree(tmp_path / "ref")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "ref"]


def test_a_late_second_run_of_a_task_leaves_nothing_behind(tmp_path, monkeypatch):
    """Dask may run a task twice: a copy still writing while the job is published must neither leave its
    temporary file in the output nor make <output>.partial again."""
    job = make_job(CONFIG, 6, 50, 1, shard_hosts=3)
    run_job(make_job(CONFIG, 4, 40, 7), tmp_path / "out")
    partial = tmp_path / "out.partial"

    def late_writer(step):  # just before the rename: a late copy of range 0 has made its temporary file
        if step == "publish:retired":
            (partial / ".part-h00000-t00000.parquet.late.tmp").write_bytes(b"")

    monkeypatch.setattr(scaleout, "kill_point", late_writer)
    run_job(job, tmp_path / "out")
    run_job(job, tmp_path / "ref")
    assert _tree(tmp_path / "out") == _tree(tmp_path / "ref")
    table = pl.DataFrame({"x": [1]})
    with pytest.raises(FileNotFoundError):   # after the rename, a late write fails and makes no folder
        shards._write(table, partial / "part-h00000-t00000.parquet")
    assert not partial.exists()


def test_a_task_writes_only_into_a_folder_that_names_its_job(tmp_path):
    """A worker that does not see the client's folder must fail, not write a folder of its own."""
    job = make_job(CONFIG, 6, 50, 1, shard_hosts=3)
    with pytest.raises(SimulatorError, match="job.json of this job is not there"):
        run_host_range(job, 0, tmp_path / "not-shared" / "out.partial")
    assert not (tmp_path / "not-shared").exists()
    other = tmp_path / "other.partial"
    other.mkdir()
    (other / shards.JOB_FILE).write_bytes(shards.job_marker(make_job(CONFIG, 6, 50, 2, shard_hosts=3)))
    with pytest.raises(SimulatorError, match="job.json of this job is not there"):
        run_host_range(job, 0, other)
    assert [p.name for p in other.iterdir()] == [shards.JOB_FILE]


def test_files_reported_but_not_in_the_folder_are_not_published(tmp_path, monkeypatch):
    """Tasks that wrote somewhere else (another machine's disk) leave the previous output as it was."""
    job = make_job(CONFIG, 6, 50, 1, shard_hosts=3)
    run_job(make_job(CONFIG, 4, 40, 7), tmp_path / "out")
    before = _tree(tmp_path / "out")
    elsewhere = tmp_path / "worker-disk"
    elsewhere.mkdir()
    (elsewhere / shards.JOB_FILE).write_bytes(shards.job_marker(job))
    monkeypatch.setattr(scaleout, "run_host_range", lambda j, r, d: run_host_range(j, r, elsewhere))
    with pytest.raises(SimulatorError, match="files missing or of the wrong size"):
        run_job(job, tmp_path / "out")
    assert _tree(tmp_path / "out") == before


def test_a_rerun_after_a_code_change_recomputes_every_range(tmp_path, monkeypatch):
    job = make_job(CONFIG, 9, 60, 4, shard_hosts=3)
    partial = tmp_path / "out.partial"
    partial.mkdir()
    (partial / scaleout.JOB_FILE).write_bytes(scaleout.job_marker(job))
    run_host_range(job, 0, partial)  # range 0 finished by the old code, then the run was killed
    monkeypatch.setattr(shards, "code_fingerprint", lambda: "a-newer-version")
    computed = []
    monkeypatch.setattr(scaleout, "run_host_range", lambda j, r, d: computed.append(r) or run_host_range(j, r, d))
    run_job(job, tmp_path / "out")
    assert computed == [0, 1, 2]


@pytest.mark.parametrize("where", ["output", "partial", "old"])
def test_folders_that_are_not_ours_are_refused_and_kept(tmp_path, where):
    """The generate staging has a manifest.json too; neither it nor a user's folder is taken for old traces."""
    out = tmp_path / "out"
    folder = {"output": out, "partial": tmp_path / "out.partial", "old": tmp_path / "out.old"}[where]
    folder.mkdir()
    (folder / MANIFEST).write_bytes(b'{"format": "simulator-staging/1"}')
    (folder / "samples.parquet").write_bytes(b"the user's data")
    before = _tree(folder)
    with pytest.raises(SimulatorError, match="--output: .*(holds no sharded traces|not an unfinished job)"):
        run_job(make_job(CONFIG, 4, 40, 7), out)
    assert _tree(folder) == before


def test_foreign_directory_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args, needle in ((["--output", str(tmp_path / "mine")], "not empty"),
                         (["--output", str(tmp_path / "x.parquet"), "--engine", "dask"], "need a directory"),
                         (["--output", str(tmp_path / "x.parquet"), "--shard-hosts", "0"], "need a directory"),
                         (["--output", str(tmp_path / "d"), "--shard-hosts", "0"], "--shard-hosts"),
                         (["--output", str(tmp_path / "d"), "--scheduler", "tcp://127.0.0.1:1"], "--engine dask")):
        proc = subprocess.run([sys.executable, "-m", "simulator", "traces", "--hosts", "4", "--steps", "10",
                               "--quiet", *args], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    import logging

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as c:
        yield c


@pytest.mark.slow
def test_dask_cluster_writes_the_same_bytes(tmp_path, cluster):
    job = make_job(CONFIG, 24, 600, 21, shard_hosts=5, shard_steps=250)
    run_job(job, tmp_path / "local")
    seen = []
    run_job(job, tmp_path / "dask", engine="dask", scheduler=cluster.scheduler_address,
            progress=lambda done, total: seen.append((done, total)))
    assert _tree(tmp_path / "dask") == _tree(tmp_path / "local")
    assert seen[-1] == (job.n_ranges, job.n_ranges)


@pytest.mark.slow
def test_killed_worker_still_gives_complete_duplicate_free_output(tmp_path, cluster):
    job = make_job(CONFIG, 48, 2016, 23, shard_hosts=3, shard_steps=700)
    run_job(job, tmp_path / "local")
    client = distributed.Client(cluster)
    pids = client.run(os.getpid)
    client.close()
    killed = []

    def kill_one(done, total):
        if not killed:
            victim = sorted(pids.values())[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    manifest = run_job(job, tmp_path / "dask", engine="dask", scheduler=cluster.scheduler_address, progress=kill_one)
    assert killed

    def tasks_run_twice(dask_scheduler):
        runs: dict = {}
        for key, _start, finish, *_ in dask_scheduler.transition_log:
            if finish == "processing" and str(key).startswith(f"simulator-{job.fingerprint}"):
                runs[key] = runs.get(key, 0) + 1
        return sum(n > 1 for n in runs.values())

    with distributed.Client(cluster) as client:
        assert client.run_on_scheduler(tasks_run_twice) >= 1, "no task was lost with the worker and run again"
    assert _tree(tmp_path / "dask") == _tree(tmp_path / "local")
    assert manifest["rows"] == 48 * 2016
    parts = _parts(tmp_path / "dask")
    assert parts.select("host", "step").is_duplicated().sum() == 0


@pytest.mark.slow
def test_dask_engine_starts_its_own_local_cluster(tmp_path):
    """No --scheduler: a LocalCluster of `workers` processes on 127.0.0.1, the same bytes again."""
    job = make_job(CONFIG, 8, 120, 31, shard_hosts=3)
    run_job(job, tmp_path / "local")
    run_job(job, tmp_path / "dask", engine="dask", workers=2)
    assert _tree(tmp_path / "dask") == _tree(tmp_path / "local")


def test_the_reader_of_sharded_traces_checks_the_files_and_cuts_windows(tmp_path):
    """open_traces: every part as one table, windows of a host around a step clipped to the trace, and a
    damaged part refused in one line naming it."""
    run_job(make_job(CONFIG, 6, 300, 4, shard_hosts=4, shard_steps=120), tmp_path / "out")
    run = open_traces(tmp_path / "out")
    traces = run.read("traces")
    assert traces.height == 6 * 300 and len(run.files("traces")) == 2 * 3
    points = pl.DataFrame({"host": [5, 0], "step": [130, 3], "tag": ["a", "b"]})
    got = run.windows(points, before=12, after=2)
    assert got.filter(pl.col("tag") == "a")["step"].to_list() == list(range(118, 133))
    assert got.filter(pl.col("tag") == "b")["step"].to_list() == list(range(0, 6))
    want = traces.filter((pl.col("host") == 5) & pl.col("step").is_between(118, 132)).sort("step")
    assert got.filter(pl.col("tag") == "a").select(METRICS).equals(want.select(METRICS))
    part = run.files("traces")[-1]
    part.write_bytes(part.read_bytes()[:-10])
    with pytest.raises(SimulatorError, match=f"{part.name}"):
        open_traces(tmp_path / "out")
    with pytest.raises(SimulatorError, match="manifest.json"):
        open_traces(tmp_path)
