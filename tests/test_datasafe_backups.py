"""Backups of a dataset are hard links to the previous file: no copy of its bytes, and still the old
bytes after the dataset is rewritten, after a failed link (a copy then) and after a crash between the
backup and the rename of the new file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from datasafe import KILL_AT_ENV, atomic_write_bytes, backup_file, list_backups

ROOT = Path(__file__).resolve().parent.parent
OLD, NEW = b'{"version": "old"}\n', b'{"version": "new", "longer": true}\n'


def test_a_backup_is_a_link_to_the_old_file_and_keeps_its_bytes_after_the_rewrite(tmp_path):
    path = tmp_path / "metrics_dataset.json"
    atomic_write_bytes(path, OLD)
    backup = backup_file(path)
    assert os.stat(backup).st_ino == os.stat(path).st_ino  # a second name, no copy
    atomic_write_bytes(path, NEW)
    assert backup.read_bytes() == OLD and path.read_bytes() == NEW
    assert os.stat(backup).st_nlink == 1  # the old bytes have one name left: the backup's
    assert list_backups(path) == [backup]


def test_where_no_link_can_be_made_the_backup_is_a_copy(tmp_path, monkeypatch):
    path = tmp_path / "metrics_dataset.json"
    atomic_write_bytes(path, OLD)

    def no_links(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    backup = backup_file(path)
    assert backup.read_bytes() == OLD and os.stat(backup).st_ino != os.stat(path).st_ino
    atomic_write_bytes(path, NEW)
    assert backup.read_bytes() == OLD


_EXPORT = """
import sys
from datasafe import atomic_write_bytes, backup_file
path = sys.argv[1]
backup_file(path)
atomic_write_bytes(path, sys.argv[2].encode())
"""


def _export(path: Path, data: bytes, kill_at: str | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if k != KILL_AT_ENV} | {"PYTHONPATH": str(ROOT)}
    if kill_at:
        env[KILL_AT_ENV] = kill_at
    return subprocess.run([sys.executable, "-c", _EXPORT, str(path), data.decode()], env=env, timeout=60).returncode


def test_a_crash_between_the_link_and_the_rename_leaves_one_backup_of_the_old_bytes(tmp_path):
    path = tmp_path / "metrics_dataset.json"
    atomic_write_bytes(path, OLD)
    assert _export(path, NEW, kill_at="metrics_dataset.*.bak.json:linked") == -signal.SIGKILL
    [backup] = list_backups(path)
    assert path.read_bytes() == OLD and os.path.samefile(backup, path)  # one file, two names, for now
    assert _export(path, NEW) == 0  # the next export finds them one file: no second backup of it
    assert list_backups(path) == [backup]
    assert backup.read_bytes() == OLD and path.read_bytes() == NEW
    assert os.stat(backup).st_nlink == 1
