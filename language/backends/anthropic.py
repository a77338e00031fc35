"""Anthropic Messages API (/v1/messages)."""

from __future__ import annotations

import httpx

from .base import Backend, BackendError, Reply, Request

API_VERSION = "2023-06-01"


class AnthropicBackend(Backend):
    type = "anthropic"

    async def generate(self, client: httpx.AsyncClient, endpoint: str, request: Request) -> Reply:
        body = {"model": request.model, "max_tokens": request.max_tokens, "temperature": request.temperature,
                "system": request.system, "messages": [{"role": "user", "content": request.prompt}]}
        headers = {"anthropic-version": API_VERSION, **({"x-api-key": self._api_key} if self._api_key else {})}
        data = await self.post_json(client, f"{endpoint}/v1/messages", body, headers, request.model)
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise BackendError("unexpected response: no content blocks", retryable=True)
        text = "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
        usage = data.get("usage") or {}
        return Reply(text, "length" if data.get("stop_reason") == "max_tokens" else "stop",
                     int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))
