"""Model backends, one small class per wire format: a module of this package is a backend, found
and registered by its `type` (name order, so the registry's order does not depend on the file
system).  A backend declares what its models.yaml entry needs (`needs_endpoint`, `needs_key`);
settings and the command line read those from here.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil

from ..errors import LanguageError
from .base import Backend, BackendError, Reply, Request

_NOT_BACKENDS = {"base", "_embedded_child"}


def _discover() -> dict[str, type[Backend]]:
    found: dict[str, type[Backend]] = {}
    for module_name in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if module_name in _NOT_BACKENDS:
            continue
        module = importlib.import_module(f"{__name__}.{module_name}")
        own = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if issubclass(c, Backend) and c.__module__ == module.__name__]
        if len(own) != 1:
            raise ImportError(f"language/backends/{module_name}.py: defines {len(own)} Backend classes, expected one")
        if own[0].type in found:
            raise ImportError(f"language/backends/{module_name}.py: backend type {own[0].type!r} registered twice")
        found[own[0].type] = own[0]
    return found


BACKENDS: dict[str, type[Backend]] = _discover()


def build_backend(spec) -> Backend:
    """The backend for a spec, with its API key read from the environment variable it names."""
    cls = BACKENDS[spec.type]
    key = None
    if spec.api_key_env:
        key = os.environ.get(spec.api_key_env) or None
        if key is None and cls.needs_key:
            raise LanguageError(f"backend {spec.name}: environment variable {spec.api_key_env} is not set")
    return cls(spec, key)


__all__ = ["BACKENDS", "Backend", "BackendError", "Reply", "Request", "build_backend"]
