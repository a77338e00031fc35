"""Anomaly kinds: one module each in this package, found and registered on import.

A kind is its module (parameters, profile builder, the names an answer may use for it, the phrasings
of its explanation, the kinds it may drive: `register(AnomalyKind(...))`) plus its entry in
`metrics.yaml`; the config loader names any kind that has one without the other.  Modules are
imported in name order, so the registry's order (and the staging's kind enum) does not depend on
the file system.
"""

import importlib
import pkgutil

from .base import ANOMALY_KINDS, AnomalyKind, EventBatch, KindParams, check_consequences, param, register

_NOT_KINDS = {"base"}

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in _NOT_KINDS:
        importlib.import_module(f"{__name__}.{_module}")
check_consequences(ANOMALY_KINDS)

__all__ = ["ANOMALY_KINDS", "AnomalyKind", "EventBatch", "KindParams", "param", "register"]
