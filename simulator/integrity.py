"""Is the metrics dataset whole, is the staging consistent: the checks behind `status` and `restore`."""

from __future__ import annotations

from pathlib import Path

import orjson

from datasafe import list_backups
from datasafe.integrity import check_files, check_json_dataset, restore_latest


def check_metrics_dataset(path: Path) -> str | None:
    """None when `path` is a complete metrics dataset, else what is wrong with it."""
    return _checked(path)[0]


def _checked(path: Path) -> tuple[str | None, int]:
    """(problem, number of samples) of a metrics dataset, reading it once."""
    problem, data = check_json_dataset(path, "training_samples", "metrics dataset")
    if problem is not None:
        return problem, 0
    samples = data["training_samples"]
    ids = [s.get("id") if isinstance(s, dict) else None for s in samples]
    if None in ids or len(set(ids)) != len(ids):
        return "sample ids missing or repeated", 0
    if any(not isinstance(s.get("metrics"), dict) for s in samples):
        return "a sample without metrics", 0
    return None, len(samples)


def check_staging(folder: Path) -> list[str]:
    """Problems with a staging folder: its manifest and the checksums it records."""
    manifest_path = Path(folder) / "manifest.json"
    try:
        manifest = orjson.loads(manifest_path.read_bytes())
    except FileNotFoundError:
        return ["manifest.json: missing"]
    except orjson.JSONDecodeError:
        return ["manifest.json: not valid JSON (damaged)"]
    files = manifest.get("files")
    if not isinstance(files, dict):
        return ["manifest.json: lists no files (written by an older version; rerun generate)"]
    return check_files(Path(folder), files)


def restore_metrics_dataset(path: Path) -> tuple[Path, Path | None]:
    return restore_latest(path, check_metrics_dataset)


def describe(output_dir: Path, dataset_name: str) -> tuple[list[str], bool]:
    """Lines for `status`, and whether everything is whole."""
    lines, ok = [], True
    dataset = output_dir / dataset_name
    problem, n = _checked(dataset)
    if problem is None:
        lines.append(f"{dataset}: {n} samples, intact")
    elif problem == "missing":
        lines.append(f"{dataset}: not generated yet")
    else:
        ok = False
        lines.append(f"{dataset}: DAMAGED: {problem}")
    backups = list_backups(dataset)
    good = [b for b in backups if check_metrics_dataset(b) is None]
    lines.append(f"backups: {len(backups)} ({len(good)} intact)" + (f", newest intact {good[-1].name}" if good else ""))
    if problem not in (None, "missing"):
        lines.append("restore the newest intact backup with: python -m simulator restore"
                     + ("" if good else " (none intact: rerun generate)"))
    staging = output_dir / "staging"
    if staging.exists():
        problems = check_staging(staging)
        if problems:
            ok = False
            lines.append(f"{staging}: DAMAGED: " + "; ".join(problems[:5]) + " (rerun generate to rebuild it)")
        else:
            lines.append(f"{staging}: consistent with its manifest")
    if (output_dir / "staging.partial").exists():
        lines.append("staging.partial/: left by an interrupted run; the next generate removes it")
    return lines, ok
