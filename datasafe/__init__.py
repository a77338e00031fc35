"""Safe file output shared by the simulator and the language generator.

Every dataset file is written to a temporary file in the same directory, flushed to disk and
renamed over the target, so a reader (or a crash) sees the old file or the new one, never half of
one.  Before a dataset is replaced, the old one is kept as a timestamped backup (the last three), a
hard link to the old file: no writer here ever writes into an existing file.
"""

from __future__ import annotations

import filecmp
import fnmatch
import os
import re
import shutil
import signal
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

KEEP_BACKUPS = 3
# Tests only: SIGKILL this process at the first write step matching this fnmatch pattern. The steps are
# "<file name>:written" (the temporary file is filled, not yet renamed) and "<file name>:renamed";
# "<backup name>:linked" (a backup made as a hard link, `backup_file`).
KILL_AT_ENV = "DATASAFE_KILL_AT"

__all__ = ["atomic_path", "atomic_write_bytes", "backup_file", "list_backups", "remove_stale_temps",
           "output_dir_problem", "output_folder_problem", "unsafe_outputs", "kill_point", "KEEP_BACKUPS",
           "KILL_AT_ENV", "swap_folder", "recover_folder"]


def _umask() -> int:
    """The process's umask: from /proc where Linux shows it, else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | Path, *, make_parent: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is fsynced and renamed onto `target`.

    With `make_parent=False` a missing folder is an error (FileNotFoundError) instead of being made:
    for writers that must only ever write into a folder someone else prepared."""
    target = Path(target)
    if make_parent:
        target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; datasets are ordinary files
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _kill_point(f"{target.name}:written")
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
        _kill_point(f"{target.name}:renamed")
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


def atomic_write_json(target: str | Path, obj) -> None:
    """Write `obj` as indented JSON (NumPy scalars and arrays as numbers and lists), atomically."""
    import orjson

    atomic_write_bytes(target, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def backup_file(path: str | Path, keep: int = KEEP_BACKUPS, now: datetime | None = None) -> Path | None:
    """Keep an existing `path` as `<stem>.<UTC timestamp>.bak<suffix>` beside it; keep the newest `keep`.

    The backup is a hard link to the file (no copy of its bytes; a copy where the file system has no
    hard links). That is safe because every writer of a dataset writes a new file and renames it over
    the old name (`atomic_path`), never into the old file: once the dataset is replaced, the backup is
    the only name of the old bytes. Until then (an export that crashed before its rename) both names
    are one file, and the next `backup_file` finds them the same file and makes no second backup.

    Only versions worth keeping take a place among the `keep`: an empty file is not backed up (and an
    empty backup is removed first), nor a file identical to the newest backup (that one is returned),
    so repeated or empty exports never push a real version out."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    for empty in (b for b in list_backups(path) if b.stat().st_size == 0):
        empty.unlink(missing_ok=True)
    existing = list_backups(path)
    if existing and (os.path.samefile(path, existing[-1]) or filecmp.cmp(path, existing[-1], shallow=False)):
        return existing[-1]
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    backup = path.with_name(f"{path.stem}.{stamp}.bak{path.suffix}")
    _link_or_copy(path, backup)
    for old in list_backups(path)[:-keep] if keep > 0 else list_backups(path):
        old.unlink(missing_ok=True)
    return backup


def _link_or_copy(source: Path, target: Path) -> None:
    """`target` as a new name of `source` (a hard link, made durable by syncing the folder), or, where
    the link cannot be made (no hard links on this file system, a name taken), as an atomic copy."""
    try:
        os.link(source, target)
    except OSError:
        atomic_write_bytes(target, lambda tmp: shutil.copyfile(source, tmp))
        return
    _fsync_dir(target.parent)
    _kill_point(f"{target.name}:linked")


def list_backups(path: str | Path) -> list[Path]:
    """Backups of `path`, oldest first."""
    path = Path(path)
    pattern = re.compile(re.escape(path.stem) + r"\.\d{8}T\d{12}Z\.bak" + re.escape(path.suffix) + "$")
    if not path.parent.exists():
        return []
    return sorted(p for p in path.parent.iterdir() if pattern.match(p.name))


def remove_stale_temps(folder: str | Path, pattern: str) -> list[Path]:
    """Remove the temporary files `atomic_path` left in `folder`, when a process was killed, for targets
    whose names match `pattern` (fnmatch). Call it only from the one process that writes those targets:
    another writer's file in progress would go too."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if fnmatch.fnmatchcase(p.name, f".{pattern}.*.tmp")
             and p.is_file() and not p.is_symlink()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def output_dir_problem(path: str | Path) -> str | None:
    """None when `path` is, or can be created as, a writable directory; else what is wrong with it.

    A symbolic link to a directory is a directory (an output folder may live elsewhere); a dangling
    link is not one and is never created through."""
    existing = Path(path)
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        exists = existing == Path(path) and existing.exists()
        return f"{existing} {'exists and ' if exists else ''}is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def unsafe_outputs(root: str | Path, files: tuple[str, ...] = (), folders: tuple[str, ...] = ()) -> list[str]:
    """What stops a program from writing its outputs in `root` as regular files inside it.

    Its outputs are the entries of `root` whose names match `files` (fnmatch), which must be regular
    files, and the entries named in `folders`, which must be folders holding only regular files and
    folders. A symbolic link among them is reported (writing through it, or replacing it, changes a
    file elsewhere or surprises whoever made it), and so is anything else where a file is expected:
    a folder, a FIFO or a device would fail, block or swallow the write. Links are never followed."""
    root = Path(root)
    problems: list[str] = []
    if not root.is_dir():
        return problems

    def visit(path: Path, folder: bool) -> None:
        if path.is_symlink():
            problems.append(f"{path} is a symbolic link (to {os.readlink(path)}); only regular files are "
                            f"written inside {root}")
        elif folder and path.is_dir():
            for child in sorted(path.iterdir()):
                visit(child, child.is_dir())
        elif folder:
            problems.append(f"{path} is not a folder")
        elif not path.is_file():
            problems.append(f"{path} is not a regular file")

    for entry in sorted(root.iterdir()):
        if entry.name in folders:
            visit(entry, True)
        elif any(fnmatch.fnmatchcase(entry.name, p) for p in files):
            visit(entry, False)
    return problems


def output_folder_problem(path: str | Path, files: tuple[str, ...] = (),
                          folders: tuple[str, ...] = ()) -> str | None:
    """None when a program may write its outputs (`files`, `folders` as in `unsafe_outputs`) in the
    folder `path`; else the first problem (`output_dir_problem`, then `unsafe_outputs`), one line.
    Nothing is created or changed: call it before touching any output."""
    problem = output_dir_problem(path)
    if problem is None:
        problems = unsafe_outputs(path, files, folders)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        problem = f"{problems[0]}{more}" if problems else None
    return problem


def swap_folder(partial: Path, final: Path, *, step: str | None = None,
                remove: Callable[[Path], None] = shutil.rmtree,
                settle: Callable[[Path], None] | None = None) -> None:
    """Replace the folder `final` by the finished folder `partial`, whole.

    `final` -> `<final>.old`, `partial` -> `final`, then `.old` is removed (by `remove`), so a reader
    sees the old folder or the new one, and a crash between the renames leaves `.old` whole for
    `recover_folder`.  `settle(final)` runs after the swap, before `.old` goes; `step` names the kill
    points `<step>:retired` and `<step>:renamed`.
    """
    retired = final.with_name(final.name + ".old")
    if retired.exists():
        remove(retired)
    if final.exists():
        final.rename(retired)
        if step:
            kill_point(f"{step}:retired")
    partial.rename(final)
    if step:
        kill_point(f"{step}:renamed")
    if settle:
        settle(final)
    if retired.exists():
        remove(retired)


def recover_folder(final: Path, complete: Callable[[Path], bool] = lambda folder: True) -> bool:
    """Finish a `swap_folder` a crash interrupted: put `<final>.old` back when `final` is gone (and
    `complete(.old)` holds), drop it when `final` is in place.  True when the old folder was put back."""
    retired = final.with_name(final.name + ".old")
    if not retired.exists():
        return False
    if final.exists():
        shutil.rmtree(retired)
        return False
    if not complete(retired):
        return False
    retired.rename(final)
    return True


def kill_point(step: str) -> None:
    """Tests only: a named step of a multi-file protocol (folder renames) where DATASAFE_KILL_AT may kill."""
    _kill_point(step)


def _kill_point(step: str) -> None:
    pattern = os.environ.get(KILL_AT_ENV)
    if pattern and fnmatch.fnmatchcase(step, pattern):
        os.kill(os.getpid(), signal.SIGKILL)


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
