"""Discriminative score: how well a classifier tells real NAB CPU windows from simulated ones.

As in the time-series generation literature (TimeGAN's "discriminative score"), but with simple,
inspectable models on signature features: one-day windows of real CPU traces (outside NAB's labelled
windows) and as many one-day windows of simulated CPU (hosts without anomalies) are described by
their signature statistics; logistic regression and gradient boosting are cross-validated with
folds grouped by source trace, so that no model can win by recognising a trace it saw in training.
The score is the better model's accuracy: 0.5 means indistinguishable.  Needs scikit-learn
(`pip install -e ".[bench]"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..catalogue import M
from ..config import SimConfig
from ..engine import run_kernel
from ..errors import SimulatorError
from ..events import plan_events
from ..population import build_population
from .reference import load_real_traces, load_signature_module, signature_of

WINDOW = 288  # one day at 5 minutes
FEATURES = ("log_p50", "cv", "acf1", "acf12", "diffstd_over_std", "kurt_diff", "skew",
            "frac_zero_diff", "frac_near_hi", "spec_slope")
SIM_STEPS = 4032
FOLDS = 5


@dataclass(frozen=True)
class DiscriminativeScore:
    score: float                    # the better model's cross-validated accuracy
    accuracy: dict[str, float]      # per model
    n_real: int
    n_simulated: int
    n_real_traces: int


def _features(module, t, v) -> list[float]:
    sig = signature_of(module, "window", t, v)
    row = [np.log1p(max(sig.get("p50", 0.0), 0.0))] + [sig.get(k, np.nan) for k in FEATURES[1:]]
    return [float(x) if np.isfinite(x) else 0.0 for x in row]


def _windows(t: np.ndarray, v: np.ndarray, windows) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for a in range(0, len(v) - WINDOW + 1, WINDOW):
        tt, vv = t[a:a + WINDOW], v[a:a + WINDOW]
        if any(lo <= tt[-1] and tt[0] <= hi for lo, hi in windows):
            continue  # overlaps a labelled anomaly: not normal behaviour
        out.append((tt, vv))
    return out


def discriminative_score(config: SimConfig, reference_dir: Path, seed: int, hosts: int = 60) -> DiscriminativeScore:
    try:
        from sklearn.ensemble import GradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GroupKFold, cross_val_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise SimulatorError("discriminative score: scikit-learn is not installed; "
                             "pip install -e \".[bench]\"") from None
    module = load_signature_module(reference_dir)
    real = [r for r in load_real_traces(reference_dir, module) if r.group == "cpu"]
    X, y, groups = [], [], []
    for g, trace in enumerate(real):
        for tt, vv in _windows(trace.t, trace.v, trace.windows):
            X.append(_features(module, tt, vv))
            y.append(0)
            groups.append(g)
    n_real = len(X)
    population = build_population(config, hosts, seed)
    plan = plan_events(config, population, 0, SIM_STEPS, seed=seed, interval_s=config.simulation.interval_s)
    traces, _ = run_kernel(config, population, plan, seed=seed, n_steps=SIM_STEPS,
                           interval_s=config.simulation.interval_s, keep_base=False)
    cpu = traces.values[M["cpu_usage"]].astype(np.float64)
    t = config.simulation.start_epoch_s + np.arange(SIM_STEPS) * config.simulation.interval_s
    candidates = [(h, a) for h in range(hosts) for a in range(0, SIM_STEPS - WINDOW + 1, WINDOW)]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    for i in rng.choice(len(candidates), size=min(n_real, len(candidates)), replace=False):
        h, a = candidates[i]
        X.append(_features(module, t[a:a + WINDOW], cpu[h, a:a + WINDOW]))
        y.append(1)
        groups.append(len(real) + h)
    X, y, groups = np.array(X), np.array(y), np.array(groups)
    models = {
        "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "gradient_boosting": GradientBoostingClassifier(random_state=0, n_estimators=150, max_depth=2),
    }
    folds = GroupKFold(n_splits=FOLDS)
    accuracy = {name: float(np.mean(cross_val_score(model, X, y, groups=groups, cv=folds, scoring="accuracy")))
                for name, model in models.items()}
    return DiscriminativeScore(max(accuracy.values()), accuracy, n_real, int(y.sum()), len(real))
