"""Ollama's native API: /api/chat with NDJSON streaming (Ollama's default), options and keep_alive.

Before its first chat an endpoint is asked for its models (GET /api/tags, once per endpoint; the
answer is kept for the run), which tells a wrong URL from a model the server does not have:
- no answer (connection refused, timeout, 5xx): "no Ollama server at URL (...)", an endpoint fault a
  retry may cure (asked again on the next call);
- an answer that is not Ollama's model list (404, not JSON): "no Ollama server at URL (not Ollama:
  ...)", a LanguageError that stops the run (a wrong URL is the user's to fix);
- a model the list lacks: "model X is not on the Ollama server at URL (it has: a, b)", a missing
  model (it leaves the pool, as a 404 would).
"""

from __future__ import annotations

import asyncio

import httpx
import orjson

from ..errors import LanguageError
from .base import (RETRYABLE_STATUS, Backend, BackendError, Reply, Request, counted_reply, decoding_schema,
                   retry_after_seconds, token_count)

MAX_NAMES_SHOWN = 20   # models named in a "not on this server" error


class OllamaBackend(Backend):
    type = "ollama"

    def __init__(self, spec, api_key: str | None = None):
        super().__init__(spec, api_key)
        self._listed: dict[str, dict[str, str]] = {}   # endpoint -> {canonical name: name as listed}
        self._asking: dict[str, asyncio.Lock] = {}      # endpoint -> held while its /api/tags is asked

    @property
    def stream(self) -> bool:
        """NDJSON chunks (Ollama's default), or one JSON object per answer (--no-stream)."""
        return self.spec.stream

    async def generate(self, client: httpx.AsyncClient, endpoint: str, request: Request) -> Reply:
        await self.check_model(client, endpoint, request.model)
        body = {"model": request.model, "stream": self.stream,
                "messages": [{"role": "system", "content": request.system},
                             {"role": "user", "content": request.prompt}],
                "options": {"seed": request.seed, "temperature": request.temperature,
                            "num_predict": request.max_tokens, "num_ctx": self.spec.context_tokens,
                            "repeat_penalty": request.repeat_penalty}}
        if self.spec.keep_alive:
            body["keep_alive"] = self.spec.keep_alive
        if request.schema is not None:  # structured outputs: Ollama constrains the answer to the schema
            body["format"] = decoding_schema(request.schema)
        url = f"{endpoint}/api/chat"
        if not self.stream:
            return _reply(await self.post_json(client, url, body, model=request.model), "", request)
        parts: list[str] = []
        with self.transport_errors(cut="stream cut"):
            async with client.stream("POST", url, content=orjson.dumps(body),
                                     headers={"content-type": "application/json"}) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self.raise_for_status(response, request.model)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        chunk = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        raise BackendError("invalid JSON line in the stream", retryable=True) from None
                    if not isinstance(chunk, dict):
                        raise BackendError("unexpected stream line: not a JSON object", retryable=True)
                    if "error" in chunk:
                        raise BackendError(f"server error in stream: {self.redact(str(chunk['error']))[:200]}",
                                           retryable=True)
                    parts.append((chunk.get("message") or {}).get("content") or "")
                    if chunk.get("done"):
                        return _reply(chunk, "".join(parts), request)
        raise BackendError("stream cut: ended without done=true", retryable=True)

    async def check_model(self, client: httpx.AsyncClient, endpoint: str, model: str) -> None:
        """BackendError (a missing model) when the endpoint's model list lacks `model`; the list is asked
        once per endpoint (calls that come meanwhile wait for that answer)."""
        listed = self._listed.get(endpoint)
        if listed is None:
            async with self._asking.setdefault(endpoint, asyncio.Lock()):
                listed = self._listed.get(endpoint)
                if listed is None:
                    names = await self._ask_tags(client, endpoint)
                    listed = self._listed[endpoint] = {canonical_model(n): n for n in names}
        if canonical_model(model) not in listed:
            has = ", ".join(sorted(listed.values())[:MAX_NAMES_SHOWN]) or "no models"
            more = f" and {len(listed) - MAX_NAMES_SHOWN} more" if len(listed) > MAX_NAMES_SHOWN else ""
            raise BackendError(f"model {model!r} is not on the Ollama server at {endpoint} (it has: {has}{more})",
                               retryable=False, status=404, model_missing=True)

    async def _ask_tags(self, client: httpx.AsyncClient, endpoint: str) -> list[str]:
        """GET /api/tags: the endpoint's model names; BackendError (retryable) when nothing answers."""
        where = f"no Ollama server at {endpoint}"
        try:
            response = await client.get(f"{endpoint}/api/tags")
        except httpx.TimeoutException:
            raise BackendError(f"{where} (timeout)", retryable=True) from None
        except httpx.ConnectError as exc:
            raise BackendError(f"{where} ({self.redact(_connect_problem(exc))})", retryable=True) from None
        except httpx.TransportError as exc:
            raise BackendError(f"{where} (connection lost: {self.redact(str(exc))})", retryable=True) from None
        if response.status_code in RETRYABLE_STATUS:
            raise BackendError(f"{where} (GET /api/tags answered HTTP {response.status_code})", retryable=True,
                               status=response.status_code,
                               retry_after=retry_after_seconds(response.headers.get("retry-after")))
        return _model_names(endpoint, response)


def _reply(final: dict, streamed: str, request: Request) -> Reply:
    """The Reply from the final chunk (or whole answer), which carries the token counts; Ollama leaves
    prompt_eval_count out when it reused the cached prompt, and then it is estimated."""
    text = streamed or (final.get("message") or {}).get("content")
    if not isinstance(text, str):
        raise BackendError("unexpected response: no message.content", retryable=True)
    return counted_reply(text, _finish_reason(final, request), request=request,
                         prompt_tokens=token_count(final, "prompt_eval_count"),
                         completion_tokens=token_count(final, "eval_count"))


def _finish_reason(final: dict, request: Request) -> str:
    """"length" (truncated) when Ollama says so or when the answer used all of num_predict (eval_count
    reached max_tokens), whatever done_reason says; "stop" otherwise.  A final object without
    done_reason does not say the answer is complete (a proxy or a cut may have ended it): a retryable
    BackendError."""
    reason = final.get("done_reason")
    if not isinstance(reason, str) or not reason:
        raise BackendError("incomplete answer: no done_reason in the final object", retryable=True)
    used = token_count(final, "eval_count")
    return "length" if reason == "length" or (used is not None and used >= request.max_tokens) else "stop"


def canonical_model(name: str) -> str:
    """Ollama's full model name: a name without a tag means its `latest` tag."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _model_names(endpoint: str, response: httpx.Response) -> list[str]:
    """The model names of a GET /api/tags answer; LanguageError when it is not Ollama's model list."""
    if response.status_code != 200:
        raise LanguageError(f"no Ollama server at {endpoint} (not Ollama: GET /api/tags answered HTTP "
                            f"{response.status_code})")
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        data = None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise LanguageError(f"no Ollama server at {endpoint} (not Ollama: GET /api/tags did not answer "
                            "with a model list)")
    return [str(m.get("name") or m.get("model")) for m in models if m.get("name") or m.get("model")]


def _connect_problem(exc: httpx.ConnectError) -> str:
    """"connection refused" when nothing listens at the address (httpx's async message, "All connection
    attempts failed", hides it among its causes), else "connection failed: <httpx's message>"."""
    cause: BaseException | None = exc
    for _ in range(8):  # a short chain: httpx -> httpcore -> OSError -> the socket's error
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    return f"connection failed: {exc or 'no detail'}"
