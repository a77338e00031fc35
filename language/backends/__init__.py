"""Model backends, one small class per wire format, registered by type name."""

from __future__ import annotations

import os

from ..errors import LanguageError
from .anthropic import AnthropicBackend
from .base import Backend, BackendError, Reply, Request
from .embedded import EmbeddedBackend
from .gemini import GeminiBackend
from .ollama import OllamaBackend
from .openai import OpenAIBackend
from .static import StaticBackend

BACKENDS: dict[str, type[Backend]] = {
    "embedded": EmbeddedBackend, "ollama": OllamaBackend, "openai": OpenAIBackend,
    "anthropic": AnthropicBackend, "gemini": GeminiBackend, "static": StaticBackend,
}


def build_backend(spec) -> Backend:
    """The backend for a spec, with its API key read from the environment variable it names."""
    key = None
    if spec.api_key_env:
        key = os.environ.get(spec.api_key_env) or None
        if key is None and spec.type in ("anthropic", "gemini"):
            raise LanguageError(f"backend {spec.name}: environment variable {spec.api_key_env} is not set")
    return BACKENDS[spec.type](spec, key)


__all__ = ["BACKENDS", "Backend", "BackendError", "Reply", "Request", "build_backend"]
