"""Safe file output shared by the simulator and the language generator.

Every dataset file is written to a temporary file in the same directory, flushed to disk and
renamed over the target, so a reader (or a crash) sees the old file or the new one, never half of
one.  Before a dataset is replaced, the old one is kept as a timestamped backup (the last three).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

KEEP_BACKUPS = 3
_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = ["atomic_path", "atomic_write_bytes", "backup_file", "list_backups", "KEEP_BACKUPS"]


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is fsynced and renamed onto `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; datasets are ordinary files
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(target: str | Path, data: bytes | Callable[[Path], None]) -> None:
    """Write bytes (or let a writer fill the temporary path) and rename atomically."""
    with atomic_path(target) as tmp:
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data)


def backup_file(path: str | Path, keep: int = KEEP_BACKUPS, now: datetime | None = None) -> Path | None:
    """Copy an existing `path` to `<stem>.<UTC timestamp>.bak<suffix>` beside it; keep the newest `keep`."""
    path = Path(path)
    if not path.exists():
        return None
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    backup = path.with_name(f"{path.stem}.{stamp}.bak{path.suffix}")
    atomic_write_bytes(backup, lambda tmp: shutil.copyfile(path, tmp))
    for old in list_backups(path)[:-keep] if keep > 0 else list_backups(path):
        old.unlink(missing_ok=True)
    return backup


def list_backups(path: str | Path) -> list[Path]:
    """Backups of `path`, oldest first."""
    path = Path(path)
    pattern = re.compile(re.escape(path.stem) + r"\.\d{8}T\d{12}Z\.bak" + re.escape(path.suffix) + "$")
    if not path.parent.exists():
        return []
    return sorted(p for p in path.parent.iterdir() if pattern.match(p.name))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
