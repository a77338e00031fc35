"""Anthropic Messages API (/v1/messages)."""

from __future__ import annotations

import httpx
import orjson

from .base import Backend, BackendError, Reply, Request, counted_reply, token_count

API_VERSION = "2023-06-01"
TOOL_DESCRIPTION = "Record the answer to the user's question in this structure."


class AnthropicBackend(Backend):
    type = "anthropic"
    needs_key = True

    async def generate(self, client: httpx.AsyncClient, endpoint: str, request: Request) -> Reply:
        body = {"model": request.model, "max_tokens": request.max_tokens, "temperature": request.temperature,
                "system": request.system, "messages": [{"role": "user", "content": request.prompt}]}
        if request.schema is not None:  # structured: one tool whose input is the answer, and it must be used
            body["tools"] = [{"name": request.schema_name, "description": TOOL_DESCRIPTION,
                              "input_schema": request.schema}]
            body["tool_choice"] = {"type": "tool", "name": request.schema_name}
        headers = {"anthropic-version": API_VERSION, **({"x-api-key": self._api_key} if self._api_key else {})}
        data = await self.post_json(client, f"{endpoint}/v1/messages", body, headers, request.model)
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise BackendError("unexpected response: no content blocks", retryable=True)
        text = _answer_text(blocks, request)
        usage = data.get("usage")  # input counts the prompt-cache writes and reads too (billed as input)
        return counted_reply(text, "length" if data.get("stop_reason") == "max_tokens" else "stop", request,
                             token_count(usage, "input_tokens", "cache_creation_input_tokens",
                                         "cache_read_input_tokens"),
                             token_count(usage, "output_tokens"))


def _answer_text(blocks: list, request: Request) -> str:
    """The text blocks joined; for a structured request the forced tool's `input` as JSON (no tool_use
    block: the text, which the caller's validation then refuses)."""
    if request.schema is not None:
        for b in blocks:
            if isinstance(b, dict) and b.get("type") == "tool_use" and b.get("name") == request.schema_name:
                return orjson.dumps(b.get("input")).decode()
    return "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
