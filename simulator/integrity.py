"""Is the metrics dataset whole, is the staging consistent: the checks behind `status` and `restore`."""

from __future__ import annotations

from pathlib import Path

import orjson

from datasafe import list_backups
from datasafe.integrity import check_files, check_json_dataset, restore_latest


def check_metrics_dataset(path: Path) -> str | None:
    """None when `path` is a complete metrics dataset, else what is wrong with it."""
    return _checked(path)[0]


def _checked(path: Path) -> tuple[str | None, int, dict]:
    """(problem, number of samples, metadata) of a metrics dataset, reading it once."""
    problem, data = check_json_dataset(path, "training_samples", "metrics dataset")
    if problem is not None:
        return problem, 0, {}
    samples = data["training_samples"]
    ids = [s.get("id") if isinstance(s, dict) else None for s in samples]
    if None in ids or len(set(ids)) != len(ids):
        return "sample ids missing or repeated", 0, {}
    if any(not isinstance(s.get("metrics"), dict) for s in samples):
        return "a sample without metrics", 0, {}
    return None, len(samples), data["metadata"]


def read_staging_manifest(folder: Path) -> tuple[dict | None, str | None]:
    """(manifest, None), or (None, what is wrong with manifest.json)."""
    try:
        manifest = orjson.loads((Path(folder) / "manifest.json").read_bytes())
    except FileNotFoundError:
        return None, "manifest.json: missing"
    except orjson.JSONDecodeError:
        return None, "manifest.json: not valid JSON (damaged)"
    if not isinstance(manifest, dict):
        return None, "manifest.json: not a staging manifest (damaged)"
    return manifest, None


def check_staging(folder: Path) -> list[str]:
    """Problems with a staging folder: its manifest and the checksums it records."""
    manifest, problem = read_staging_manifest(folder)
    if problem is not None:
        return [problem]
    files = manifest.get("files")
    if not isinstance(files, dict):
        return ["manifest.json: lists no files (written by an older version; rerun generate)"]
    return check_files(Path(folder), files)


# what says which run a dataset or a staging came from (the metadata of the one, the manifest of the other)
RUN_KEYS = ("session_id", "config_hash", "seed", "total_samples", "anomaly_ratio")


def run_differences(dataset_metadata: dict, manifest: dict) -> list[str]:
    """How the run of a dataset differs from the run of a staging (empty when they are the same run)."""
    return [f"{k} {dataset_metadata.get(k)!r} vs {manifest.get(k)!r}" for k in RUN_KEYS
            if dataset_metadata.get(k) != manifest.get(k)]


def dataset_staging_differences(dataset: Path, staging: Path) -> list[str]:
    """How an intact dataset and a readable staging differ in their run; empty when either is unreadable."""
    problem, _, metadata = _checked(dataset)
    manifest, manifest_problem = read_staging_manifest(staging)
    if problem is not None or manifest_problem is not None:
        return []
    return run_differences(metadata, manifest)


def restore_metrics_dataset(path: Path) -> tuple[Path, Path | None]:
    return restore_latest(path, check_metrics_dataset)


def describe(output_dir: Path, dataset_name: str) -> tuple[list[str], bool]:
    """Lines for `status`, and whether everything is whole and the dataset matches its staging."""
    from .staging import STAGING_FORMAT

    lines, ok = [], True
    dataset = output_dir / dataset_name
    problem, n, metadata = _checked(dataset)
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
        manifest, _ = read_staging_manifest(staging)
        problems = check_staging(staging)
        if problems:
            ok = False
            lines.append(f"{staging}: DAMAGED: " + "; ".join(problems[:5]) + " (rerun generate to rebuild it)")
        elif manifest.get("format") != STAGING_FORMAT:
            lines.append(f"{staging}: of an older layout (one flat folder, written by an earlier version); "
                         "the next generate replaces it")
        else:
            tables = ", ".join(f"{t} {v['rows']} rows" for t, v in manifest.get("tables", {}).items())
            lines.append(f"{staging}: consistent with its manifest ({tables})")
        differences = run_differences(metadata, manifest) if problem is None and manifest is not None else []
        if differences:
            ok = False
            lines.append(f"{dataset.name} and {staging.name}/ come from different runs ("
                         + ", ".join(differences) + "); rerun generate to rebuild both")
        elif problem is None and manifest is not None:
            lines.append(f"{dataset.name} and {staging.name}/ come from the same run ({metadata.get('session_id')})")
    if (output_dir / "staging.partial").exists():
        lines.append("staging.partial/: left by an interrupted run; the next generate removes it")
    return lines, ok
