"""Ollama's native API: /api/chat with NDJSON streaming (Ollama's default), options and keep_alive."""

from __future__ import annotations

import httpx
import orjson

from .base import Backend, BackendError, Reply, Request, counted_reply, decoding_schema, token_count


class OllamaBackend(Backend):
    type = "ollama"
    stream = True

    async def generate(self, client: httpx.AsyncClient, endpoint: str, request: Request) -> Reply:
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


def _reply(final: dict, streamed: str, request: Request) -> Reply:
    """The Reply from the final chunk (or whole answer), which carries the token counts; Ollama leaves
    prompt_eval_count out when it reused the cached prompt, and then it is estimated."""
    text = streamed or (final.get("message") or {}).get("content")
    if not isinstance(text, str):
        raise BackendError("unexpected response: no message.content", retryable=True)
    return counted_reply(text, "length" if final.get("done_reason") == "length" else "stop", request,
                         token_count(final, "prompt_eval_count"), token_count(final, "eval_count"))
