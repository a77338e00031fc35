"""Detecting damaged outputs and restoring them from the newest good backup.

A dataset is checked by a validator (the caller's: it knows the schema); staging folders by the
checksums their manifest records.  `restore_latest` never destroys evidence: the damaged file is
kept beside the restored one as `<stem>.<UTC time>.damaged<suffix>`.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from . import atomic_write_bytes, list_backups

Validator = Callable[[Path], str | None]  # None when the file is good, else what is wrong


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_record(path: Path) -> dict:
    """What a manifest keeps about a file to detect damage later."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def check_files(folder: Path, records: dict[str, dict]) -> list[str]:
    """Problems with the files a manifest lists: missing, wrong size, wrong checksum."""
    problems = []
    for name, rec in sorted(records.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != rec.get("bytes"):
            problems.append(f"{name}: {path.stat().st_size} bytes, manifest says {rec.get('bytes')}")
        elif sha256_file(path) != rec.get("sha256"):
            problems.append(f"{name}: checksum differs from the manifest (damaged)")
    return problems


def check_json_dataset(path: Path, samples_key: str, what: str) -> tuple[str | None, dict | None]:
    """(problem, document) of a `{"metadata": {..., "total_samples"}, samples_key: [...]}` file.

    The problem is None for a whole file, "missing" when absent, else what is wrong; the document
    is returned for the caller's own further checks."""
    import orjson

    try:
        data = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        return "missing", None
    except orjson.JSONDecodeError as exc:
        return f"not valid JSON (truncated or damaged): {str(exc)[:80]}", None
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict) \
            or not isinstance(data.get(samples_key), list):
        return f"not a {what} (metadata or {samples_key} missing)", None
    n, declared = len(data[samples_key]), data["metadata"].get("total_samples")
    if declared != n:
        return f"{n} samples but metadata.total_samples says {declared}", None
    return None, data


def restore_latest(path: Path, validate: Validator) -> tuple[Path, Path | None]:
    """Replace `path` with its newest backup that validates; returns (backup used, damaged copy kept)."""
    path = Path(path)
    for backup in reversed(list_backups(path)):
        if validate(backup) is None:
            kept = None
            if path.exists():
                stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
                kept = path.with_name(f"{path.stem}.{stamp}.damaged{path.suffix}")
                shutil.copyfile(path, kept)
            atomic_write_bytes(path, lambda tmp: shutil.copyfile(backup, tmp))
            return backup, kept
    raise FileNotFoundError(f"{path}: no backup that passes the checks")
