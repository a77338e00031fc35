"""Hostile input for `python -m language`: one-line error, exit status 2, nothing touched.

Mirrors tests/test_cli.py for the simulator. The language command line takes no output file names (the
exports are always <output-dir>/language_dataset.json and .chat.jsonl, the staging
<output-dir>/language_staging), so an output escapes its folder only through what is already in it:
a symbolic link (absolute, or relative with ../) in place of a file or folder the generator writes, or
a folder, FIFO or file where the other is expected. Config input is a copy of data_config/ with one
YAML file that is not UTF-8. Every case starts from a real previous run (dataset, chat, a backup,
staging) and checks, link by link and byte by byte with modification times, that nothing in the test's
folder changed: not the outputs, not the config, not the files the links point to.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from language.__main__ import main

from conftest import ROOT
from loopback import LoopbackServer

DATASET, CHAT, STAGING = "language_dataset.json", "language_dataset.chat.jsonl", "language_staging"
NOWHERE = "openai=http://127.0.0.1:9"   # never called: every case stops before a request
# the YAML files the language generator reads (anomaly_vocabulary.yaml only with --from-metrics)
LANGUAGE_YAML = ("models.yaml", "conversation_prompts.yaml", "technical_terms.yaml", "error_patterns.yaml",
                 "personality_types.yaml", "question_styles.yaml", "english_patterns.yaml",
                 "project_management_terms.yaml", "banking_terms.yaml", "metrics_patterns.yaml")


def run(argv) -> tuple[int, str, str]:
    """`python -m language argv` in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def snapshot(root: Path) -> dict:
    """Every entry under `root`, links not followed: kind, content (file bytes, link target) and mtime."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                content = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                content = ("file", path.read_bytes())
            else:
                content = ("other", stat.S_IFMT(st.st_mode))
            entries[path.relative_to(root)] = (content, st.st_mtime_ns)
    return entries


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> str:
    assert code == 2, (code, err)
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("python -m language: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture(scope="module")
def previous_run(tmp_path_factory):
    """Outputs of two real runs: dataset, chat, one backup of each, staging with ledger and shards."""
    out = tmp_path_factory.mktemp("previous") / "out"
    with LoopbackServer(models=("alpha", "beta")) as server:
        for count in ("2", "3"):
            code, _, err = run(["generate", "--output-dir", out, "--quiet", "--endpoint", f"openai={server.url}",
                                "--models", "alpha,beta", "--types", "conversation", "--count", count])
            assert code == 0, err
    assert len(list(out.glob("language_dataset.*.bak.json"))) == 1
    assert len(list((out / STAGING / "shards").glob("part-*.parquet"))) == 2
    return out


@pytest.fixture
def world(tmp_path, previous_run):
    """(output folder with the previous run, a folder elsewhere with a victim file, a data_config copy)."""
    out = tmp_path / "out"
    shutil.copytree(previous_run, out, symlinks=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "victim.json").write_bytes(b'{"not": "yours"}\n')
    config = tmp_path / "config"
    shutil.copytree(ROOT / "data_config", config)
    return out, elsewhere, config


# ------------------------------------------------------------------------------- hostile outputs
def _link(rel: str, to: str, move: bool = False):
    """Replace out/rel with a symbolic link to `to` ("{elsewhere}/..." or a relative path); with `move`,
    the original is moved there first (the link then leads to the real data, outside the folder)."""
    def setup(out: Path, elsewhere: Path) -> str:
        path, target = out / rel, to.replace("{elsewhere}", str(elsewhere))
        if move:
            shutil.move(path, elsewhere / path.name)
        elif path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        path.symlink_to(target)
        return str(path)
    return setup


def _replace(rel: str, kind: str):
    def setup(out: Path, elsewhere: Path) -> str:
        path = out / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        if kind == "folder":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            path.write_bytes(b"a file where a folder belongs")
        return str(path)
    return setup


def _backup(out: Path) -> str:
    return next(out.glob("language_dataset.*.bak.json")).name


def _shard(out: Path) -> str:
    return f"{STAGING}/shards/" + next((out / STAGING / "shards").glob("part-*.parquet")).name


# (id, setup(out, elsewhere) -> path the error must name, the problem it must state)
HOSTILE_OUTPUTS = [
    ("dataset-links-out", _link(DATASET, "{elsewhere}/victim.json"), "is a symbolic link"),
    ("dataset-links-out-relative", _link(DATASET, "../elsewhere/victim.json"), "is a symbolic link"),
    ("dataset-dangling-link", _link(DATASET, "{elsewhere}/missing.json"), "is a symbolic link"),
    ("chat-links-out", _link(CHAT, "{elsewhere}/victim.json"), "is a symbolic link"),
    ("backup-links-out", lambda out, e: _link(_backup(out), "{elsewhere}/victim.json")(out, e),
     "is a symbolic link"),
    ("staging-links-out", _link(STAGING, "{elsewhere}/language_staging", move=True), "is a symbolic link"),
    ("ledger-links-out", _link(f"{STAGING}/ledger.sqlite", "{elsewhere}/ledger.sqlite", move=True),
     "is a symbolic link"),
    ("shards-link-out", _link(f"{STAGING}/shards", "{elsewhere}/shards", move=True), "is a symbolic link"),
    ("shard-links-out", lambda out, e: _link(_shard(out), "{elsewhere}/part.parquet", move=True)(out, e),
     "is a symbolic link"),
    ("dataset-is-a-folder", _replace(DATASET, "folder"), "is not a regular file"),
    ("dataset-is-a-fifo", _replace(DATASET, "fifo"), "is not a regular file"),
    ("staging-is-a-file", _replace(STAGING, "file"), "is not a folder"),
]
COMMANDS = {
    "generate": ["generate", "--endpoint", NOWHERE, "--models", "alpha", "--types", "conversation", "--count", "4"],
    "retry-failed": ["retry-failed", "--endpoint", NOWHERE, "--models", "alpha"],
    "export": ["export"], "status": ["status"], "restore": ["restore"], "reset": ["reset", "--yes"],
}


@pytest.mark.parametrize("setup, problem", [c[1:] for c in HOSTILE_OUTPUTS], ids=[c[0] for c in HOSTILE_OUTPUTS])
def test_an_output_that_would_leave_the_folder_is_refused_before_anything_is_touched(tmp_path, world, setup,
                                                                                    problem):
    out, elsewhere, config = world
    named = setup(out, elsewhere)
    before = snapshot(tmp_path)
    assert_one_line_error(*run([*COMMANDS["generate"], "--output-dir", out, "--config-dir", config, "--quiet"]),
                          f"--output-dir: {named} {problem}")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_a_symlinked_output(tmp_path, world, command):
    out, elsewhere, config = world
    named = _link(STAGING, "{elsewhere}/language_staging", move=True)(out, elsewhere)
    before = snapshot(tmp_path)
    argv = [*COMMANDS[command], "--output-dir", out, "--quiet"]
    if command in ("generate", "retry-failed", "export"):
        argv += ["--config-dir", config]
    assert_one_line_error(*run(argv), f"--output-dir: {named} is a symbolic link")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("where", ["is-a-file", "under-a-file", "dangling-link"])
def test_an_output_dir_that_cannot_be_a_folder(tmp_path, world, where):
    out, elsewhere, config = world
    blocker = out / DATASET
    target, named = {"is-a-file": (blocker, f"{blocker} exists and is not a directory"),
                     "under-a-file": (blocker / "sub", f"{blocker} is not a directory"),
                     "dangling-link": (tmp_path / "link", f"{tmp_path / 'link'} is not a directory")}[where]
    if where == "dangling-link":
        target.symlink_to(elsewhere / "gone")
    before = snapshot(tmp_path)
    assert_one_line_error(*run([*COMMANDS["generate"], "--output-dir", target, "--config-dir", config, "--quiet"]),
                          f"--output-dir: {named}")
    assert snapshot(tmp_path) == before


def test_a_real_symlinked_output_dir_is_fine_and_writes_inside_its_target(tmp_path, world):
    """The output folder itself may be a link (training -> /data/training); only its contents may not."""
    out, elsewhere, config = world
    link = tmp_path / "training"
    link.symlink_to(out)
    with LoopbackServer(models=("alpha", "beta")) as server:
        code, _, err = run(["generate", "--output-dir", link, "--config-dir", config, "--quiet", "--endpoint",
                            f"openai={server.url}", "--models", "alpha,beta", "--types", "conversation",
                            "--count", "3"])
    assert code == 0, err
    assert len(list(out.glob("language_dataset.*.bak.json"))) == 2 and link.is_symlink()


# ---------------------------------------------------------------------------- non-UTF-8 config
def _latin1_comment(raw: bytes) -> bytes:
    return raw + "# réseau, café\n".encode("latin-1")


def _utf16(raw: bytes) -> bytes:
    return raw.decode("utf-8").encode("utf-16")


def _cut_sequence(raw: bytes) -> bytes:
    return raw + "# €".encode()[:-1]     # a three-byte character cut after two bytes


def _lone_byte_in_value(raw: bytes) -> bytes:
    i = raw.index(b":", raw.index(b"\n", raw.index(b"\n") + 1)) + 1   # a key past the first two lines
    return raw[:i] + b" \xff" + raw[i:]


ENCODINGS = {"latin-1": _latin1_comment, "utf-16": _utf16, "cut-utf-8": _cut_sequence, "lone-byte": _lone_byte_in_value}
NON_UTF8 = [(name, "latin-1") for name in LANGUAGE_YAML] + [
    ("models.yaml", "utf-16"), ("technical_terms.yaml", "cut-utf-8"), ("conversation_prompts.yaml", "lone-byte"),
    ("anomaly_vocabulary.yaml", "latin-1")]


@pytest.mark.parametrize("name, encoding", NON_UTF8, ids=[f"{n}-{e}" for n, e in NON_UTF8])
def test_a_non_utf8_yaml_file_is_named_and_nothing_is_touched(tmp_path, world, name, encoding):
    out, _, config = world
    path = config / name
    path.write_bytes(ENCODINGS[encoding](path.read_bytes()))
    before = snapshot(tmp_path)
    argv = [*COMMANDS["generate"], "--output-dir", out, "--config-dir", config, "--quiet"]
    if name == "anomaly_vocabulary.yaml":   # read only for prompts from simulated samples
        argv = ["generate", "--endpoint", NOWHERE, "--models", "alpha", "--types", "metrics_explanation",
                "--count", "1", "--from-metrics", tmp_path / "no-metrics.json", "--output-dir", out,
                "--config-dir", config, "--quiet"]
    assert_one_line_error(*run(argv), f"{path}: not UTF-8 text")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["retry-failed", "export"])
def test_other_commands_that_read_the_config_reject_it_too(tmp_path, world, command):
    out, _, config = world
    path = config / "banking_terms.yaml"
    path.write_bytes(_latin1_comment(path.read_bytes()))
    before = snapshot(tmp_path)
    assert_one_line_error(*run([*COMMANDS[command], "--output-dir", out, "--config-dir", config, "--quiet"]),
                          f"{path}: not UTF-8 text")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b'{"training_samples": "not a list"}'],
                         ids=["binary", "wrong-shape"])
def test_a_bad_metrics_file_is_rejected_before_the_staging_is_touched(tmp_path, world, content):
    out, _, config = world
    metrics = tmp_path / "metrics.json"
    metrics.write_bytes(content)
    before = snapshot(tmp_path)
    assert_one_line_error(*run(["generate", "--endpoint", NOWHERE, "--models", "alpha", "--types",
                                "metrics_explanation", "--count", "1", "--from-metrics", metrics,
                                "--output-dir", out, "--config-dir", config, "--quiet"]), "--from-metrics")
    assert snapshot(tmp_path) == before
