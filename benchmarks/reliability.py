"""The fault campaign of issue 7: faults injected, faults survived, bad inputs tried, samples lost, duplicates.

One run, one table. Every fault is real and every server is on 127.0.0.1; the machinery is the test
suite's, imported from tests/ (nothing here re-implements it):

* simulator SIGKILL (tests/reliability/test_crashes.py): `python -m simulator` is killed at a random
  moment of a run (seeded fraction of a measured run time) or at a write step of staging, export or
  backup (the DATASAFE_KILL_AT hook of datasafe.atomic_path, step chosen by the seeded RNG). After each
  kill the dataset must be the old one byte for byte or the new one complete, the staging must match its
  manifest; the rerun must give the bytes of an uninterrupted run. Lost and duplicated samples are
  counted against that run's samples.
* language SIGKILL (tests/reliability/test_language_crashes.py): `python -m language` against a
  loopback OpenAI server, killed at every write step of its CASES (staging shard, backup, export,
  chat), and at random moments of a generate against a slower server. The exports must be old or new,
  `status` must pass; the rerun must export the items of an uninterrupted run (lost / duplicated items
  counted against them) without asking the server again for anything finished.
* server faults (tests/loopback.py FaultPlan): refused connections, resets, answers slower than the
  timeout, 429 with and without Retry-After, 500/503/529, invalid JSON, cut streams, a model that
  disappears mid-run, and a seeded random mix; `retry-failed` asks again for what failed. Calls per item
  must stay within requests.max_attempts; the API key (from the environment) must appear in no file.
* bad input (hypothesis, seeded): random CLI values and mutated YAML (truncated, random bytes, wrong
  types, NaN/inf, huge numbers, unknown keys, alias bombs, non-UTF-8) through both CLIs' in-process
  `main`, and hostile output folders (tests/test_language_cli.py's symbolic links, FIFOs, folders where
  files go). A refusal must be exit status 2 with one line on stderr and no traceback, with nothing in
  the output folder changed; an input that is still valid must run (exit 0).

Usage: python benchmarks/reliability.py [--quick] [--seed N] [--keep DIR]
Nothing is asserted; figures that must be 0 are printed as such, with the cases that broke a rule.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tests", ROOT / "tests" / "reliability"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import yaml  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed as hseed, settings as hsettings, strategies as st  # noqa: E402

import test_cli as sim_cli  # noqa: E402  (run, snapshot, make_previous_outputs of the simulator CLI tests)
import test_crashes as sim_crash  # noqa: E402
import test_language_cli as lang_cli  # noqa: E402
import test_language_crashes as lang_crash  # noqa: E402
from datasafe import KILL_AT_ENV  # noqa: E402
from loopback import ACTIONS, FaultPlan, LoopbackServer, Rule, deterministic_answer  # noqa: E402

SIM_KILL_STEPS = ("traces-*.parquet:written", "labels-*.parquet:renamed", "events-*.parquet:written",
                  "samples-*.parquet:renamed", "manifest.json:written", "manifest.json:renamed",
                  "metrics_dataset.*.bak.json:linked",
                  "metrics_dataset.json:written", "metrics_dataset.json:renamed")
API_KEY_ENV = "RELIABILITY_API_KEY"


@dataclass
class Row:
    """One line of the table."""

    section: str
    kind: str
    tried: int = 0          # faults injected / inputs tried
    survived: int = 0       # every rule held
    lost: int = 0
    duplicates: int = 0
    codes: Counter = field(default_factory=Counter)
    notes: list = field(default_factory=list)   # what broke a rule, first few

    def note(self, text: str) -> None:
        if len(self.notes) < 3:
            self.notes.append(text)


def multiset_diff(reference, got) -> tuple[int, int]:
    """(items of `reference` missing from `got`, items of `got` present more than once)."""
    ref, have = Counter(reference), Counter(got)
    return sum((ref - have).values()), sum(n - 1 for n in have.values() if n > 1)


def quiet_run(main, argv) -> tuple[int, str, str]:
    """main(argv) in process: (exit status, stdout, stderr); an escaping exception is status 'exc'."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:  # noqa: BLE001 - a bug to count, not to stop the campaign
            code = f"exception {type(exc).__name__}"
            err.write(f"Traceback (escaped): {exc!r}\n")
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------ simulator SIGKILL
def simulator_kills(work: Path, rng: random.Random, n_timed: int, n_steps: int, samples: int) -> list[Row]:
    from simulator.integrity import check_metrics_dataset, check_staging
    from simulator.__main__ import main as sim_main

    ref = work / "sim-ref"
    sim_crash._run(ref / "one", 1, samples=samples)
    started = time.monotonic()
    sim_crash._run(ref / "two", 2, samples=samples)
    duration = time.monotonic() - started
    first, second = ((ref / n / "metrics_dataset.json").read_bytes() for n in ("one", "two"))
    reference = [json.dumps(s, sort_keys=True) for s in json.loads(second)["training_samples"]]
    steps = rng.sample(SIM_KILL_STEPS, min(n_steps, len(SIM_KILL_STEPS)))
    cases = [("at a random moment", None, rng.uniform(0.05, 1.0)) for _ in range(n_timed)] + \
            [("at a write step", step, None) for step in steps]
    rows = {kind: Row("simulator SIGKILL", f"{kind} (generate/stage/export/backup)") for kind, _, _ in cases}
    for i, (kind, step, fraction) in enumerate(cases):
        row, out = rows[kind], work / f"sim-kill-{i}"
        shutil.copytree(ref / "one", out)
        proc = sim_crash._run(out, 2, wait=False, samples=samples, env={KILL_AT_ENV: step} if step else None)
        if fraction is not None:
            time.sleep(duration * fraction)
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=300)
        row.codes[proc.returncode] += 1
        where = step or f"{fraction:.2f} of {duration:.1f} s"
        if proc.returncode != -signal.SIGKILL:
            row.note(f"{where}: finished before the kill (exit {proc.returncode})")
            continue
        row.tried += 1
        ok = True
        dataset = out / "metrics_dataset.json"
        if dataset.read_bytes() not in (first, second) or check_metrics_dataset(dataset) is not None:
            ok = False
            row.note(f"{where}: dataset neither the old nor the new one")
        if (out / "staging").exists() and check_staging(out / "staging"):
            ok = False
            row.note(f"{where}: staging differs from its manifest")
        code = quiet_run(sim_main, ["status", "--output-dir", out])[0]   # completes an interrupted swap
        if code != 0:
            ok = False
            row.note(f"{where}: status exit {code}")
        sim_crash._run(out, 2, samples=samples)
        rerun = dataset.read_bytes()
        lost, dups = multiset_diff(reference, [json.dumps(s, sort_keys=True)
                                               for s in json.loads(rerun)["training_samples"]])
        row.lost, row.duplicates = row.lost + lost, row.duplicates + dups
        if rerun != second or check_staging(out / "staging"):
            ok = False
            row.note(f"{where}: rerun not byte-identical to an uninterrupted run")
        row.survived += ok
        shutil.rmtree(out)
    return list(rows.values())


# ------------------------------------------------------------------------------ language SIGKILL
def language_kills(work: Path, rng: random.Random, n_steps: int, n_timed: int) -> list[Row]:
    from datasafe import list_backups
    from language.export import CHAT_NAME, DATASET_NAME, check_language_dataset

    step_row = Row("language SIGKILL", "at a write step (shard/backup/export/chat)")
    timed_row = Row("language SIGKILL", "at a random moment of generate (slow server)")
    with LoopbackServer(models=("alpha", "beta")) as server, \
            LoopbackServer(models=("alpha", "beta"), delay_s=0.1) as slow:
        config = lang_crash.write_config(work / "lang-config", server.url)
        slow_config = lang_crash.write_config(work / "lang-config-slow", slow.url)
        reference = lang_crash.make_reference(work / "lang-ref", config)
        cases = rng.sample(lang_crash.CASES, min(n_steps, len(lang_crash.CASES)))
        durations = []
        for _ in range(2):   # the second, warm run is the one measured
            probe = work / "lang-probe"
            shutil.copytree(reference.base, probe)
            started = time.monotonic()
            lang_crash.spawn_language("generate", "--config-dir", slow_config, "--output-dir", probe, "--quiet",
                                      *lang_crash.SECOND)
            durations.append(time.monotonic() - started)
            shutil.rmtree(probe)
        duration = durations[-1]
        plan = [(step_row, c, None) for c in cases] + \
               [(timed_row, ("generate", None, None, None), rng.uniform(0.3, 0.9)) for _ in range(n_timed)]
        for i, (row, (command, step, dataset_after, chat_after), fraction) in enumerate(plan):
            out = work / f"lang-kill-{i}"
            shutil.copytree(reference.base, out)
            cfg = config if fraction is None else slow_config
            args = ["--config-dir", cfg, "--output-dir", out, "--quiet"]
            if command == "export":
                lang_crash.run_language("generate", *args, *lang_crash.SECOND, "--no-export")
            rerun = [command, *args, *(lang_crash.SECOND if command == "generate" else [])]
            if fraction is None:
                code = lang_crash.spawn_language(*rerun, kill_at=step).returncode
            else:
                proc = subprocess.Popen([sys.executable, "-m", "language", *map(str, rerun)], cwd=ROOT,
                                        env=lang_crash.ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(duration * fraction)
                proc.send_signal(signal.SIGKILL)
                code = proc.wait(timeout=120)
            row.codes[code] += 1
            where = step or f"{fraction:.2f} of {duration:.1f} s"
            if code != -signal.SIGKILL:
                row.note(f"{where}: finished before the kill (exit {code})")
                shutil.rmtree(out)
                continue
            row.tried += 1
            ok = True
            dataset, chat = out / DATASET_NAME, out / CHAT_NAME
            old_or_new = check_language_dataset(dataset) is None and (
                dataset.read_bytes() == reference.first_dataset
                or lang_crash.dataset_items(dataset) == reference.second_items)
            chat_ok = chat.read_bytes() == reference.first_chat or lang_crash.chat_items(chat) == reference.second_chat
            backups_ok = all(b.read_bytes() == reference.first_dataset for b in list_backups(dataset))
            if not (old_or_new and chat_ok and backups_ok):
                ok = False
                row.note(f"{where}: an export or backup is neither the old nor the new one")
            if (dataset_after == "old" and dataset.read_bytes() != reference.first_dataset) or \
                    (chat_after == "old" and chat.read_bytes() != reference.first_chat):
                ok = False
                row.note(f"{where}: expected the previous file")
            if lang_crash.run_language("status", "--output-dir", out) != 0:
                ok = False
                row.note(f"{where}: status reports damage after the kill")
            server_calls = len(server.calls_for())
            code = lang_crash.run_language(*rerun)
            row.codes[code] += 1
            got = lang_crash.dataset_items(dataset)
            lost, dups = multiset_diff(reference.second_items, got)
            ids = lang_crash.ledger_ids(out)
            dups += len(ids) - len(set(ids))
            row.lost, row.duplicates = row.lost + lost, row.duplicates + dups
            if code != 0 or got != reference.second_items or lang_crash.temp_files(out):
                ok = False
                row.note(f"{where}: rerun exit {code}, items differ or temporary files left")
            if fraction is None and len(server.calls_for()) != server_calls:
                ok = False
                row.note(f"{where}: the rerun asked the server again for finished items")
            row.survived += ok
            shutil.rmtree(out)
    return [step_row, timed_row]


# ------------------------------------------------------------------------------ server faults
ITEMS = ["--types", "conversation,technical_explanation", "--count", "3"]   # 6 prompts x 2 models


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"   # nothing listens there now: connections are refused


def fault_config(path: Path, endpoints: list[str], names: tuple[str, ...]) -> Path:
    """tests/reliability's loopback config for models `names`, with an API key from the environment and a
    0.5 s timeout."""
    if not path.exists():
        lang_crash.write_config(path, endpoints[0])
    models = yaml.safe_load((path / "models.yaml").read_text())
    models["backends"]["loopback"].update(endpoints=endpoints, api_key_env=API_KEY_ENV, models=list(names))
    models["requests"].update(timeout_s=0.5)
    (path / "models.yaml").write_text(yaml.safe_dump(models))
    return path


def ledger_rows(out: Path) -> tuple[list[str], list[str], int]:
    """(ids of every result row, ids of accepted rows, most calls one item took in its last run)."""
    db = sqlite3.connect(out / "language_staging" / "ledger.sqlite")
    try:
        rows = db.execute("SELECT item_id, status, attempts FROM results").fetchall()
    finally:
        db.close()
    return [r[0] for r in rows], [r[0] for r in rows if r[1] == "accepted"], max((r[2] for r in rows), default=0)


def client_errors(out: Path) -> int:
    db = sqlite3.connect(out / "language_staging" / "ledger.sqlite")
    try:
        return db.execute("SELECT COUNT(*) FROM attempts WHERE outcome != 'ok'").fetchone()[0]
    finally:
        db.close()


def server_faults(work: Path, rng: random.Random, random_mixes: int) -> tuple[list[Row], Row, int]:
    """The fault rows, the secrets row, and requests.max_attempts."""
    from language.__main__ import main as lang_main
    from language.export import DATASET_NAME

    secret = f"sk-reliability-{rng.getrandbits(64):016x}"
    os.environ[API_KEY_ENV] = secret
    two, three = ("alpha", "beta"), ("alpha", "beta", "gamma")
    scenarios = [
        ("refused (one of two endpoints down)", "refused-one", two),
        ("refused (the only endpoint; up again for retry-failed)", "refused-all", two),
        ("connection reset", [Rule("reset", times=3)], two),
        ("slower than the timeout", [Rule("slow", times=2, seconds=1.2)], two),
        ("429 with Retry-After", [Rule("429", times=3, retry_after=0.05)], two),
        ("429 without Retry-After", [Rule("429", times=3)], two),
        ("500, 503, 529", [Rule("500", times=2), Rule("503", times=2), Rule("529", times=2)], two),
        ("invalid JSON", [Rule("garbage", times=3)], two),
        ("cut stream / short body", [Rule("cut", times=3)], two),
        ("model disappears mid-run, a third model left (back for retry-failed)", "vanish", three),
        ("model disappears mid-run, no spare model (back for retry-failed)", "vanish", two),
    ]
    picks = [a for a in ACTIONS if a != "unknown_model"]
    for _ in range(random_mixes):   # seeded: which faults, how often, on which model
        rules = []
        for _ in range(rng.randint(3, 6)):
            action = rng.choice(picks)
            rules.append(Rule(action, times=rng.randint(1, 3), seconds=1.2 if action == "slow" else 0.0,
                              retry_after=rng.choice([None, 0.05]) if action == "429" else None,
                              model=rng.choice([None, "alpha", "beta"])))
        scenarios.append((f"random mix: {', '.join(r.action for r in rules)}", rules, two))

    rows = []
    references = {}   # models -> (accepted item ids, export items) of a fault-free run
    for models in {m for _, _, m in scenarios}:
        with LoopbackServer(models=models, api_key=secret) as clean:
            ref_out = work / f"fault-ref-{len(models)}"
            cfg = fault_config(work / f"fault-config-ref-{len(models)}", [clean.url], models)
            max_attempts = yaml.safe_load((cfg / "models.yaml").read_text())["requests"]["max_attempts"]
            quiet_run(lang_main, ["generate", "--config-dir", cfg, "--output-dir", ref_out, "--quiet", *ITEMS])
            references[models] = (set(ledger_rows(ref_out)[1]), lang_crash.dataset_items(ref_out / DATASET_NAME))
    for i, (name, spec, models) in enumerate(scenarios):
        row = Row("server faults", name)
        rules = spec if isinstance(spec, list) else []
        calls = Counter()

        def answer(model, messages, options, _calls=calls):
            _calls["n"] += 1
            if spec == "vanish" and _calls["n"] == 4:
                server.remove_model("beta")
            return deterministic_answer(model, messages, options)

        with LoopbackServer(models=models, api_key=secret, faults=FaultPlan(rules), answer=answer) as server:
            dead = closed_port_url()
            endpoints = [dead, server.url] if spec == "refused-one" else [dead] if spec == "refused-all" \
                else [server.url]
            cfg = fault_config(work / f"fault-config-{i}", endpoints, models)
            out = work / f"fault-{i}"
            args = ["--config-dir", cfg, "--output-dir", out, "--quiet"]
            code = quiet_run(lang_main, ["generate", *args, *ITEMS])[0]
            row.codes[code] += 1
            rounds = 0
            while code == 3 and rounds < 3:   # the run finished with failed items: ask again
                rounds += 1
                if spec == "refused-all":
                    fault_config(cfg, [server.url], models)
                if spec == "vanish":
                    server.add_model("beta")
                code = quiet_run(lang_main, ["retry-failed", *args])[0]
                row.codes[code] += 1
            injected = sum(server.faults.fired) + (client_errors(out) if spec in ("refused-one", "refused-all")
                                                   else 0)
            injected += sum(c.outcome == "unknown_model" for c in server.calls_for())
            row.tried = injected
            got = lang_crash.dataset_items(out / DATASET_NAME) if (out / DATASET_NAME).exists() else []
            ids, accepted, most = ledger_rows(out)
            ref_ids, ref_items = references[models]
            lost = len(ref_ids - set(accepted)) + max(0, len(set(accepted)) - len(got))   # by item id
            dups = len(ids) - len(set(ids)) + multiset_diff(got, got)[1]
            row.lost, row.duplicates = lost, dups
            ok = code == 0 and lost == 0 and dups == 0 and most <= max_attempts
            if got != ref_items:
                rejected = len(set(ids) - set(accepted))
                row.note(f"export differs from the fault-free run: other models answered some slots"
                         + (f", {rejected} answers rejected (duplicates of the fallback model's)" if rejected else ""))
            if most > max_attempts:
                row.note(f"an item took {most} calls > max_attempts {max_attempts}")
            if code != 0:
                row.note(f"still exit {code} after {rounds} retry-failed")
            row.survived = injected if ok else 0
            if rounds:
                row.notes.insert(0, f"completed by {rounds} retry-failed")
            rows.append(row)

    leaks = Row("secrets", "API key in a file written (tried: files scanned; lost: files with it)")
    for path in work.rglob("*"):
        if path.is_file() and not path.is_symlink():
            leaks.tried += 1
            if secret.encode() in path.read_bytes():
                leaks.lost += 1
                leaks.note(str(path.relative_to(work)))
    leaks.survived = leaks.tried - leaks.lost
    del os.environ[API_KEY_ENV]
    return rows, leaks, max_attempts


# ------------------------------------------------------------------------------ bad input
def shorten(value) -> str:
    text = str(value)
    return text if len(text) <= 30 else f"{text[:12]}... ({len(text)} characters)"


def clean_refusal(code, out: str, err: str, prog: str) -> bool:
    return (code == 2 and out == "" and "Traceback" not in err and err.endswith("\n") and err.count("\n") == 1
            and err.startswith(prog) and ": error: " in err)


class Tally:
    def __init__(self, section: str, kind: str):
        self.row = Row(section, kind)

    def record(self, code, out, err, prog, touched: bool, label: str) -> None:
        row = self.row
        row.tried += 1
        row.codes[code] += 1
        if code == 0:          # the input was still valid: it ran
            row.survived += 1
        elif clean_refusal(code, out, err, prog) and not touched:
            row.survived += 1
        else:
            why = "outputs touched" if touched else (err.strip().splitlines() or ["(no message)"])[-1][:120]
            row.note(f"{label}: exit {code}: {why}")


HOSTILE_SCALARS = st.one_of(
    st.text(max_size=6), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20),
    st.sampled_from([10**400, -(10**400), float("nan"), float("inf"), -1, 0, True, None, "", [], {}]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
ALIAS_BOMB = b"\nbomb_a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\nbomb_b: &b [*a, *a, *a, *a, *a, *a]\n" \
             b"bomb_c: &c [*b, *b, *b, *b, *b, *b]\nbomb_d: [*c, *c, *c, *c, *c, *c]\n"


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
        yield path, node
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    else:
        yield path, node


def _set(node, path, value):
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def mutate_yaml(data: st.DataObject, raw: bytes) -> tuple[str, bytes]:
    """A hostile variant of the YAML file `raw`: (what was done, new bytes)."""
    kind = data.draw(st.sampled_from(["truncate", "bytes", "leaf", "unknown-key", "alias-bomb", "encoding",
                                      "random-yaml"]))
    if kind == "truncate":
        return kind, raw[:data.draw(st.integers(0, len(raw) - 1))]
    if kind == "bytes":
        at = data.draw(st.integers(0, len(raw) - 1))
        return kind, raw[:at] + data.draw(st.binary(min_size=1, max_size=4)) + raw[at + 1:]
    if kind == "alias-bomb":
        return kind, raw + ALIAS_BOMB
    if kind == "encoding":
        how = data.draw(st.sampled_from(["latin-1", "utf-16", "lone-byte"]))
        if how == "lone-byte":
            at = data.draw(st.integers(0, len(raw)))
            return f"{kind} {how}", raw[:at] + b"\xff" + raw[at:]
        return f"{kind} {how}", (raw.decode() + "\n# café réseau\n").encode(how)
    if kind == "random-yaml":
        doc = data.draw(st.recursive(HOSTILE_SCALARS.filter(lambda x: not isinstance(x, float) or x == x),
                                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c,
                                                                                          max_size=3), max_leaves=8))
        return kind, yaml.safe_dump(doc).encode()
    doc = yaml.safe_load(raw)
    mappings = [p for p, v in _leaves(doc) if isinstance(v, dict)]
    leaves = [p for p, v in _leaves(doc) if not isinstance(v, (dict, list)) and p]
    if kind == "unknown-key" or not leaves:
        path = data.draw(st.sampled_from(mappings))
        target = doc
        for key in path:
            target = target[key]
        target["zz_" + data.draw(st.text("abcdefgh", min_size=1, max_size=6))] = 1
        return kind, yaml.safe_dump(doc, sort_keys=False).encode()
    value = data.draw(HOSTILE_SCALARS)
    _set(doc, data.draw(st.sampled_from(leaves)), value)
    return kind, yaml.safe_dump(doc, sort_keys=False).encode()


def fuzz(examples: int, seed: int, body) -> None:
    """Run body(data) for `examples` hypothesis draws, seeded, no shrinking, no database."""
    hsettings(max_examples=examples, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])(
        hseed(seed)(given(st.data())(body)))()


def bad_input(work: Path, seed: int, n: int) -> list[Row]:
    from language.__main__ import main as lang_main
    from simulator.__main__ import main as sim_main
    from simulator.config import DEFAULT_CONFIG_PATH

    rows = []
    sim_prog, lang_prog = "python -m simulator", "python -m language"
    counter = iter(range(10**9))

    def sim_case(argv, label, tally, config: bytes | None = None):
        case = work / f"fuzz-{next(counter)}"
        out = case / "out"
        before = sim_cli.make_previous_outputs(out)
        if config is not None:
            (case / "metrics.yaml").write_bytes(config)
            argv = [*argv, "--config", case / "metrics.yaml"]
        code, o, e = quiet_run(sim_main, [*argv, "--output-dir", out, "--quiet"])
        tally.record(code, o, e, sim_prog, code != 0 and sim_cli.snapshot(out) != before, label)
        shutil.rmtree(case)

    # simulator: command-line values
    t = Tally("bad input", "simulator CLI values (--samples, --anomaly-ratio, --seed, --workers, junk)")
    hostile_number = st.one_of(st.integers(-10**30, 0), st.integers(10**9, 10**400),
                               st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", "", " ", "3.5", "many"]),
                               st.floats(allow_nan=True, allow_infinity=True).map(repr))

    def sim_values(data):
        option = data.draw(st.sampled_from(["--samples", "--anomaly-ratio", "--seed", "--workers", "--junk"]))
        value = data.draw(hostile_number)
        if option == "--anomaly-ratio" and isinstance(value, int):
            value = value or -1
        argv = ["--samples", "50", f"{option}={value}"]
        sim_case(argv, f"{option}={shorten(value)}", t)
    fuzz(n, seed, sim_values)
    rows.append(t.row)

    # simulator: YAML config
    t = Tally("bad input", "simulator metrics.yaml mutated (truncated, bytes, types, keys, aliases, encodings)")
    shipped = DEFAULT_CONFIG_PATH.read_bytes()

    def sim_yaml(data):
        kind, raw = mutate_yaml(data, shipped)
        sim_case(["--samples", "50"], kind, t, config=raw)
    fuzz(n, seed + 1, sim_yaml)
    rows.append(t.row)

    # language: previous outputs and a live loopback server for inputs that stay valid
    with LoopbackServer(models=("alpha", "beta")) as server:
        previous = work / "lang-previous"
        for count in ("1", "2"):
            quiet_run(lang_main, ["generate", "--output-dir", previous, "--quiet", "--endpoint",
                                  f"openai={server.url}", "--models", "alpha,beta", "--types", "conversation",
                                  "--count", count])
        endpoint = ["--endpoint", f"openai={server.url}", "--models", "alpha,beta"]

        def lang_case(argv, label, tally, yaml_file: tuple[str, bytes] | None = None):
            case = work / f"fuzz-{next(counter)}"
            out = case / "out"
            shutil.copytree(previous, out, symlinks=True)
            config = case / "config"
            shutil.copytree(ROOT / "data_config", config)
            if yaml_file is not None:
                (config / yaml_file[0]).write_bytes(yaml_file[1])
            before = lang_cli.snapshot(case)
            code, o, e = quiet_run(lang_main, [*argv, "--output-dir", out, "--config-dir", config, "--quiet"])
            tally.record(code, o, e, lang_prog, code != 0 and lang_cli.snapshot(case) != before, label)
            shutil.rmtree(case)

        t = Tally("bad input", "language CLI values (--count, --types, --seed, --concurrency, --endpoint)")

        def lang_values(data):
            option = data.draw(st.sampled_from(["--count", "--types", "--seed", "--concurrency", "--endpoint",
                                                "--models", "--junk"]))
            if option in ("--types", "--endpoint", "--models"):
                value = data.draw(st.one_of(st.text(max_size=12), st.sampled_from(
                    ["poetry", "conversation,,", "embedded=http://x", "openai=ftp://127.0.0.1", "openai=", ","])))
            else:
                value = data.draw(hostile_number)
            argv = ["generate", *endpoint, "--types", "conversation", "--count", "1"]
            if option == "--endpoint":
                argv = ["generate", "--models", "alpha", "--types", "conversation", "--count", "1"]
            lang_case([*argv, f"{option}={value}"], f"{option}={shorten(value)}", t)
        fuzz(n, seed + 2, lang_values)
        rows.append(t.row)

        t = Tally("bad input", "language YAML files mutated (models.yaml and the nine domain files)")
        names = list(lang_cli.LANGUAGE_YAML)

        def lang_yaml(data):
            name = data.draw(st.sampled_from(names))
            kind, raw = mutate_yaml(data, (ROOT / "data_config" / name).read_bytes())
            lang_case(["generate", *endpoint, "--types", "conversation", "--count", "1"], f"{name} {kind}", t,
                      (name, raw))
        fuzz(n, seed + 3, lang_yaml)
        rows.append(t.row)

        # hostile output folders (tests/test_language_cli.py's cases) for every command
        t = Tally("bad input", "language output folder with links out, FIFOs, folders for files")
        rng = random.Random(seed)
        for case_id, setup, _problem in lang_cli.HOSTILE_OUTPUTS:
            for command in rng.sample(list(lang_cli.COMMANDS), max(1, min(len(lang_cli.COMMANDS), n // 10))):
                case = work / f"fuzz-{next(counter)}"
                out, elsewhere = case / "out", case / "elsewhere"
                shutil.copytree(previous, out, symlinks=True)
                elsewhere.mkdir()
                (elsewhere / "victim.json").write_bytes(b'{"not": "yours"}\n')
                setup(out, elsewhere)
                before = lang_cli.snapshot(case)
                code, o, e = quiet_run(lang_main, [*lang_cli.COMMANDS[command], "--output-dir", out, "--quiet"])
                touched = lang_cli.snapshot(case) != before
                if code == 0:   # an unsafe output must never be accepted
                    code = "0 (accepted)"
                t.record(code, o, e, lang_prog, touched, f"{case_id} {command}")
                shutil.rmtree(case)
        rows.append(t.row)

    # the simulator's output folder: a dataset or staging that is a link out of it
    t = Tally("bad input", "simulator output folder with links out (dataset, staging)")
    for case_id, target in (("dataset-links-out", "metrics_dataset.json"), ("staging-links-out", "staging")):
        case = work / f"fuzz-{next(counter)}"
        out, elsewhere = case / "out", case / "elsewhere"
        sim_cli.make_previous_outputs(out)
        elsewhere.mkdir()
        shutil.move(out / target, elsewhere / target)
        (out / target).symlink_to(elsewhere / target)
        before = lang_cli.snapshot(elsewhere)
        code, o, e = quiet_run(sim_main, ["--samples", "50", "--output-dir", out, "--quiet"])
        if code == 0:
            code = "0 (accepted)"
        t.record(code, o, e, sim_prog, lang_cli.snapshot(elsewhere) != before, case_id)
        shutil.rmtree(case)
    rows.append(t.row)
    return rows


# ------------------------------------------------------------------------------ table
def table(rows: list[Row]) -> str:
    head = ("section", "kind of fault / input", "injected/tried", "survived", "lost", "duplicates", "exit codes seen")
    body = [(r.section, r.kind, str(r.tried), str(r.survived), str(r.lost), str(r.duplicates),
             ", ".join(f"{c} x{n}" for c, n in sorted(r.codes.items(), key=lambda kv: str(kv[0]))) or "-")
            for r in rows]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 30 s")
    parser.add_argument("--seed", type=int, default=7, help="seed of kill points, fault mixes and fuzzing")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    q = args.quick
    sizes = dict(sim_timed=2 if q else 8, sim_steps=2 if q else 10, sim_samples=2000 if q else 3000,
                 lang_steps=2 if q else len(lang_crash.CASES), lang_timed=1 if q else 5, mixes=1 if q else 4,
                 fuzz=8 if q else 60)
    started = time.monotonic()
    work = args.keep or Path(tempfile.mkdtemp(prefix="reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    rows, timings = [], {}
    try:
        for name, run in (
                ("simulator SIGKILL", lambda: simulator_kills(work, rng, sizes["sim_timed"], sizes["sim_steps"],
                                                              sizes["sim_samples"])),
                ("language SIGKILL", lambda: language_kills(work, rng, sizes["lang_steps"], sizes["lang_timed"])),
                ("server faults", lambda: server_faults(work, rng, sizes["mixes"])),
                ("bad input", lambda: bad_input(work, args.seed, sizes["fuzz"]))):
            t0 = time.monotonic()
            result = run()
            if name == "server faults":
                fault_rows, leaks, max_attempts = result
                result = [*fault_rows, leaks]
            rows += result
            timings[name] = time.monotonic() - t0
            print(f"# {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    faults = [r for r in rows if r.section in ("simulator SIGKILL", "language SIGKILL", "server faults")]
    inputs = [r for r in rows if r.section == "bad input"]
    print(table(rows))
    print()
    print(f"faults injected {sum(r.tried for r in faults)}, survived {sum(r.survived for r in faults)}; "
          f"bad inputs tried {sum(r.tried for r in inputs)}, handled {sum(r.survived for r in inputs)} "
          f"(exit 2 with one line and nothing touched, or valid and run); "
          f"samples lost {sum(r.lost for r in rows if r.section != 'secrets')} (must be 0), "
          f"duplicates {sum(r.duplicates for r in rows)} (must be 0); "
          f"secret leaks {sum(r.lost for r in rows if r.section == 'secrets')} (must be 0)")
    print(f"seed {args.seed}, {'quick' if q else 'default'} run, {time.monotonic() - started:.0f} s wall; "
          f"calls per item capped at requests.max_attempts = {max_attempts}")
    notes = [(r, n) for r in rows for n in r.notes]
    if notes:
        print("\nnotes (first cases of each row that broke a rule or changed the outcome):")
        for r, n in notes:
            print(f"  {r.kind}: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
