"""SIGKILL of `python -m language` while it stages, exports and backs up: the old dataset or the new, never half.

The generator runs as a subprocess against a loopback OpenAI server (tests/loopback.py) that its
models.yaml names, and is killed with SIGKILL at one write step. The step is chosen with the
DATASAFE_KILL_AT test hook of datasafe.atomic_path (off unless set): "<file>:written" is the moment its
temporary file is filled but not renamed, "<file>:renamed" the moment after the rename, and
"<backup>:linked" the moment a backup (a hard link to the previous file) is made. Export takes
milliseconds, so the simulator tests' way of killing at fractions of a measured run time would
rarely land in it; the hook lands on every step, every time.

After each kill: the process died of SIGKILL at that step; language_dataset.json is the previous file
byte for byte, or the new one complete (its checks pass, its items are the new run's), and so is the
chat JSONL; every backup is whole; `python -m language status` exits 0 and the ledger holds every item
of the run. A rerun then asks the server nothing and exports the same items as an uninterrupted run,
with no duplicates and no temporary files left behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from datasafe import KEEP_BACKUPS, KILL_AT_ENV, list_backups
from language.__main__ import main
from language.export import CHAT_NAME, DATASET_NAME, check_language_dataset

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from loopback import LoopbackServer  # noqa: E402

ENV = {k: v for k, v in os.environ.items() if k != KILL_AT_ENV} | {"PYTHONPATH": str(ROOT)}
FIRST = ["--types", "conversation,technical_explanation", "--count", "3"]    # 12 items: the previous dataset
SECOND = ["--types", "conversation,technical_explanation", "--count", "6"]   # 24 items: 12 more, then export

# (command, kill step, dataset after the kill, chat JSONL after the kill): "old" = the previous file byte
# for byte, "new" = the new run's items, complete. `export` runs on a staging that `generate --no-export`
# finished. The first two steps are staging (the shard of accepted samples written before the export).
CASES = [
    ("generate", "part-*.parquet:written", "old", "old"),
    ("generate", "part-*.parquet:renamed", "old", "old"),                 # shard on disk, ledger not told
    ("generate", "language_dataset.*.bak.json:linked", "old", "old"),     # backing up the previous dataset
    ("generate", "language_dataset.json:written", "old", "old"),
    ("generate", "language_dataset.json:renamed", "new", "old"),
    ("generate", "language_dataset.chat.*.bak.jsonl:linked", "new", "old"),
    ("generate", "language_dataset.chat.jsonl:written", "new", "old"),
    ("generate", "language_dataset.chat.jsonl:renamed", "new", "new"),   # all written, ledger not closed
    ("export", "language_dataset.*.bak.json:linked", "old", "old"),
    ("export", "language_dataset.json:renamed", "new", "old"),
]
QUICK = {("generate", "language_dataset.json:written")}   # the rest are marked slow


# ------------------------------------------------------------------------------------ helpers
def write_config(config_dir: Path, url: str) -> Path:
    """The shipped data_config with one backend: the loopback server at `url`, one request at a time
    (the answers then arrive in a fixed order and two runs export the same items)."""
    shutil.copytree(ROOT / "data_config", config_dir)
    models = yaml.safe_load((config_dir / "models.yaml").read_text())
    models["backends"] = {"loopback": {"type": "openai", "models": ["alpha", "beta"], "endpoints": [url],
                                       "concurrency": 1}}
    models["requests"].update(timeout_s=5, backoff_base_s=0.01, backoff_max_s=0.05, max_attempts=4)
    models["rotation"].update(cooldown_s=0.3, failures_before_cooldown=3, swap_interval=3)
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    return config_dir


def run_language(*argv) -> int:
    """`python -m language argv` in this process, output swallowed; its exit status."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            return main([str(a) for a in argv])
        except SystemExit as exc:
            return exc.code


def spawn_language(*argv, kill_at: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m language argv` as a child process, SIGKILLed at the write step `kill_at` if given."""
    env = ENV | ({KILL_AT_ENV: kill_at} if kill_at else {})
    return subprocess.run([sys.executable, "-m", "language", *map(str, argv)], cwd=ROOT, env=env,
                          capture_output=True, timeout=timeout)


def dataset_items(path: Path) -> list[tuple]:
    """The exported samples without what differs between runs (session, timestamp, batch), sorted."""
    samples = json.loads(path.read_bytes())["samples"]
    return sorted((s["type"], s["prompt"], s["model"], s["response"], s["term"], s["category"]) for s in samples)


def chat_items(path: Path) -> list[tuple]:
    """Every line of a chat JSONL (each must be JSON), as (type, model, term, user, assistant), sorted."""
    rows = []
    for line in path.read_bytes().splitlines():
        record = json.loads(line)
        roles = [m["role"] for m in record["messages"]]
        assert roles == ["system", "user", "assistant"], roles
        rows.append((record["type"], record["model"], record["term"], record["messages"][1]["content"],
                     record["messages"][2]["content"]))
    return sorted(rows)


def ledger_ids(out: Path) -> list[str]:
    """Item ids of the ledger's results, in row order (duplicates kept, to be counted)."""
    db = sqlite3.connect(out / "language_staging" / "ledger.sqlite")
    try:
        return [r[0] for r in db.execute("SELECT item_id FROM results ORDER BY rowid")]
    finally:
        db.close()


def temp_files(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*.tmp")]


@dataclass(frozen=True)
class Reference:
    base: Path               # an output folder after the FIRST run, copied by each case
    first_dataset: bytes     # its language_dataset.json
    first_chat: bytes
    second_items: list       # what an uninterrupted SECOND run exports on top of it
    second_chat: list
    second_ids: list         # the ledger's item ids after it


@pytest.fixture(scope="module")
def server():
    with LoopbackServer(models=("alpha", "beta")) as s:
        yield s


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory, server):
    return write_config(tmp_path_factory.mktemp("lang-config") / "config", server.url)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, config_dir) -> Reference:
    return make_reference(tmp_path_factory.mktemp("lang-ref"), config_dir)


def make_reference(root: Path, config_dir: Path) -> Reference:
    """The FIRST run in root/base, and what an uninterrupted SECOND run on top of it exports."""
    base = root / "base"
    assert run_language("generate", "--config-dir", config_dir, "--output-dir", base, "--quiet", *FIRST) == 0
    second = root / "second"
    shutil.copytree(base, second)
    assert run_language("generate", "--config-dir", config_dir, "--output-dir", second, "--quiet", *SECOND) == 0
    ids = ledger_ids(second)
    assert len(ids) == len(set(ids)) == 24
    items = dataset_items(second / DATASET_NAME)
    assert len(items) == len(set(items)) == 24 and len(dataset_items(base / DATASET_NAME)) == 12
    return Reference(base, (base / DATASET_NAME).read_bytes(), (base / CHAT_NAME).read_bytes(), items,
                     chat_items(second / CHAT_NAME), sorted(ids))


# -------------------------------------------------------------------------------------- test
@pytest.mark.parametrize("command, step, dataset_after, chat_after", [
    pytest.param(*case, id=f"{case[0]}-{case[1]}",
                 marks=() if case[:2] in QUICK else pytest.mark.slow) for case in CASES])
def test_sigkill_leaves_old_or_new_exports_and_rerun_matches_an_uninterrupted_run(
        tmp_path, server, config_dir, reference, command, step, dataset_after, chat_after):
    out = tmp_path / "out"
    shutil.copytree(reference.base, out)
    args = ["--config-dir", config_dir, "--output-dir", out, "--quiet"]
    if command == "export":
        assert run_language("generate", *args, *SECOND, "--no-export") == 0
    rerun = [command, *args, *(SECOND if command == "generate" else [])]

    proc = spawn_language(*rerun, kill_at=step)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]   # it died at that step

    dataset, chat = out / DATASET_NAME, out / CHAT_NAME
    assert check_language_dataset(dataset) is None
    if dataset_after == "old":
        assert dataset.read_bytes() == reference.first_dataset
    else:
        assert dataset_items(dataset) == reference.second_items
    if chat_after == "old":
        assert chat.read_bytes() == reference.first_chat
    else:
        assert chat_items(chat) == reference.second_chat
    for backup in list_backups(dataset):        # a backup is whole, and it is the previous dataset
        assert backup.read_bytes() == reference.first_dataset
    for backup in list_backups(chat):
        assert backup.read_bytes() == reference.first_chat
    assert run_language("status", "--output-dir", out) == 0
    assert sorted(ledger_ids(out)) == reference.second_ids   # every answer of the run is in the ledger

    calls = len(server.calls_for())
    assert run_language(*rerun) == 0
    assert len(server.calls_for()) == calls                  # nothing finished is asked again
    assert dataset_items(dataset) == reference.second_items  # same items, none lost, none twice
    assert chat_items(chat) == reference.second_chat
    assert sorted(ledger_ids(out)) == reference.second_ids
    assert check_language_dataset(dataset) is None
    assert run_language("status", "--output-dir", out) == 0
    assert temp_files(out) == []
    first_items = dataset_items(reference.base / DATASET_NAME)
    assert 1 <= len(list_backups(dataset)) <= KEEP_BACKUPS
    for backup in list_backups(dataset):                     # whole: the previous or the new dataset
        assert check_language_dataset(backup) is None
        assert dataset_items(backup) in (first_items, reference.second_items)
