"""Real traces written by others (NAB, AWS CloudWatch at 5 minutes) and their realism signatures.

The reference data and its `signature.py` live outside the project (`../shared/reference/` beside
the checkout, or `$SIMULATOR_REFERENCE`); they are read, never copied.  Both sides of every
comparison go through the same `signature.signature` function.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import SimulatorError

ENV_VAR = "SIMULATOR_REFERENCE"
INTERVAL_S = 300.0
IDLE_LEVEL_PCT = 1.0  # a CPU trace whose normal-part median is below this is an idle host

# which real files stand for which kind of metric (globs under nab/data/)
REFERENCE_FILES: dict[str, tuple[str, ...]] = {
    "cpu": ("realAWSCloudwatch/*cpu_utilization*.csv",),
    "network": ("realAWSCloudwatch/*network_in*.csv", "realAWSCloudwatch/*NetworkIn*.csv"),
}


@dataclass(frozen=True)
class RealTrace:
    """One real file: its values, labelled windows (epoch s) and signature."""

    group: str          # "cpu" or "network"
    name: str
    t: np.ndarray
    v: np.ndarray
    windows: tuple[tuple[float, float], ...]
    signature: dict

    @property
    def idle(self) -> bool:
        return self.group == "cpu" and self.signature.get("p50", 0.0) < IDLE_LEVEL_PCT


def default_reference_dir() -> Path:
    """$SIMULATOR_REFERENCE, else ../shared/reference beside the project checkout, else beside the cwd."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    project = Path(__file__).resolve().parents[2]
    for candidate in (project.parent / "shared" / "reference", Path.cwd().parent / "shared" / "reference"):
        if (candidate / "signature.py").exists():
            return candidate
    return project.parent / "shared" / "reference"


def load_signature_module(reference_dir: Path) -> ModuleType:
    """Import the reference's signature.py by path."""
    path = Path(reference_dir) / "signature.py"
    if not path.is_file():
        raise SimulatorError(f"reference: {path} not found; pass --reference DIR or set ${ENV_VAR} "
                             f"to the folder holding signature.py and nab/")
    spec = importlib.util.spec_from_file_location("reference_signature", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def signature_of(module: ModuleType, name: str, t: np.ndarray, v: np.ndarray,
                 *, windows=(), points=()) -> dict:
    """The reference signature of one trace (warnings of constant stretches silenced)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return module.signature(name, np.asarray(t, np.float64), np.asarray(v, np.float64),
                                list(windows), list(points), dt=INTERVAL_S)


def load_real_traces(reference_dir: Path, module: ModuleType | None = None) -> list[RealTrace]:
    """Every reference file of every group, with its NAB windows and signature."""
    reference_dir = Path(reference_dir)
    module = module or load_signature_module(reference_dir)
    labels = reference_dir / "nab" / "labels"
    try:
        with open(labels / "combined_windows.json", encoding="utf-8") as f:
            all_windows = {Path(k).name: v for k, v in json.load(f).items()}
        with open(labels / "combined_labels.json", encoding="utf-8") as f:
            all_points = {Path(k).name: v for k, v in json.load(f).items()}
    except (OSError, ValueError) as exc:
        raise SimulatorError(f"reference: cannot read NAB labels under {labels}: {exc}") from None
    traces = []
    for group, patterns in REFERENCE_FILES.items():
        files = sorted({p for pattern in patterns for p in (reference_dir / "nab" / "data").glob(pattern)})
        for path in files:
            t, v, _, _ = module.load_csv(str(path))
            wins = tuple((module._parse_time(a), module._parse_time(b)) for a, b in all_windows.get(path.name, []))
            pts = [module._parse_time(p) for p in all_points.get(path.name, [])]
            sig = signature_of(module, path.name, t, v, windows=wins, points=pts)
            traces.append(RealTrace(group, path.name, np.asarray(t), np.asarray(v), wins, sig))
    if not any(tr.group == "cpu" for tr in traces):
        raise SimulatorError(f"reference: no NAB CPU files under {reference_dir / 'nab' / 'data'}")
    return traces
