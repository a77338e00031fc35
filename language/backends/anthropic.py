"""Anthropic Messages API (/v1/messages)."""

from __future__ import annotations

import httpx

from .base import Backend, BackendError, Reply, Request, counted_reply, token_count

API_VERSION = "2023-06-01"


class AnthropicBackend(Backend):
    type = "anthropic"
    needs_key = True

    async def generate(self, client: httpx.AsyncClient, endpoint: str, request: Request) -> Reply:
        body = {"model": request.model, "max_tokens": request.max_tokens, "temperature": request.temperature,
                "system": request.system, "messages": [{"role": "user", "content": request.prompt}]}
        headers = {"anthropic-version": API_VERSION, **({"x-api-key": self._api_key} if self._api_key else {})}
        data = await self.post_json(client, f"{endpoint}/v1/messages", body, headers, request.model)
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise BackendError("unexpected response: no content blocks", retryable=True)
        text = "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
        usage = data.get("usage")  # input counts the prompt-cache writes and reads too (billed as input)
        return counted_reply(text, "length" if data.get("stop_reason") == "max_tokens" else "stop", request,
                             token_count(usage, "input_tokens", "cache_creation_input_tokens",
                                         "cache_read_input_tokens"),
                             token_count(usage, "output_tokens"))
