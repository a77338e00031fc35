"""Anthropic Messages API (/v1/messages): streamed as server-sent events (`stream: true`, the default),
or one JSON message (--no-stream).

A stream is `message_start` (the message and its input token counts), for each content block
`content_block_start`, `content_block_delta`s (`text_delta` text, or a tool's input as
`input_json_delta` pieces of JSON) and `content_block_stop`, then `message_delta` (the stop reason
and the output token count, cumulative) and `message_stop`; `ping`s may come anywhere, and an `error`
event ends the stream with the API's error.  A stream that ends before `message_stop` is cut.
"""

from __future__ import annotations

import httpx
import orjson

from .base import RETRYABLE_STATUS, Backend, BackendError, Reply, Request, counted_reply, token_count

API_VERSION = "2023-06-01"
TOOL_DESCRIPTION = "Record the answer to the user's question in this structure."
INPUT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")  # all billed as input
# an `error` event's type -> the HTTP status the same error has as a response (its retry rule)
ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
                "overloaded_error": 529}


class AnthropicBackend(Backend):
    type = "anthropic"
    needs_key = True

    @property
    def stream(self) -> bool:
        """Server-sent events, or one JSON message per answer (--no-stream)."""
        return self.spec.stream

    async def generate(self, client: httpx.AsyncClient, endpoint: str, request: Request) -> Reply:
        body = {"model": request.model, "max_tokens": request.max_tokens, "temperature": request.temperature,
                "system": request.system, "messages": [{"role": "user", "content": request.prompt}]}
        if request.schema is not None:  # structured: one tool whose input is the answer, and it must be used
            body["tools"] = [{"name": request.schema_name, "description": TOOL_DESCRIPTION,
                              "input_schema": request.schema}]
            body["tool_choice"] = {"type": "tool", "name": request.schema_name}
        headers = {"anthropic-version": API_VERSION, **({"x-api-key": self._api_key} if self._api_key else {})}
        url = f"{endpoint}/v1/messages"
        if not self.stream:
            data = await self.post_json(client, url, body, headers=headers, model=request.model)
            blocks = data.get("content")
            if not isinstance(blocks, list):
                raise BackendError("unexpected response: no content blocks", retryable=True)
            return _reply(blocks, data.get("stop_reason"), data.get("usage"), request)
        body["stream"] = True
        message = StreamedMessage()
        with self.transport_errors(cut="stream cut"):
            async with client.stream("POST", url, content=orjson.dumps(body),
                                     headers={"content-type": "application/json", **headers}) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self.raise_for_status(response, request.model)
                data_lines: list[str] = []
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        data_lines.append(line[5:].strip())
                    elif not line.strip() and data_lines:   # a blank line ends an event
                        message.feed(_event_data(data_lines), self.redact)
                        data_lines = []
                        if message.stopped:
                            return message.reply(request)
                if data_lines:   # the last event without its blank line
                    message.feed(_event_data(data_lines), self.redact)
                    if message.stopped:
                        return message.reply(request)
        raise BackendError("stream cut: ended without message_stop", retryable=True)


def _event_data(lines: list[str]) -> dict:
    """An event's data (its `data:` lines joined by newlines) as a JSON object."""
    try:
        data = orjson.loads("\n".join(lines))
    except orjson.JSONDecodeError:
        raise BackendError("invalid JSON in the stream", retryable=True) from None
    if not isinstance(data, dict):
        raise BackendError("unexpected stream event: not a JSON object", retryable=True)
    return data


class StreamedMessage:
    """A message put together from its stream's events (`feed` each event's data, in order)."""

    def __init__(self):
        self.blocks: dict[int, dict] = {}      # index -> {"type", "name", "text" or "json" pieces}
        self.usage: dict = {}                  # message_start's usage, updated by message_delta's
        self.stop_reason: str | None = None
        self.stopped = False                   # message_stop came

    def feed(self, event: dict, redact=lambda text: text) -> None:
        kind = event.get("type")
        if kind == "message_start":
            usage = (event.get("message") or {}).get("usage")
            self.usage.update(usage if isinstance(usage, dict) else {})
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            self.blocks[event.get("index", len(self.blocks))] = {
                "type": block.get("type"), "name": block.get("name"), "pieces": [block.get("text") or ""]}
        elif kind == "content_block_delta":
            block = self.blocks.setdefault(event.get("index", 0), {"type": None, "name": None, "pieces": []})
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                block["type"] = block["type"] or "text"
                block["pieces"].append(delta.get("text") or "")
            elif delta.get("type") == "input_json_delta":
                block["pieces"].append(delta.get("partial_json") or "")
        elif kind == "message_delta":
            self.stop_reason = (event.get("delta") or {}).get("stop_reason") or self.stop_reason
            usage = event.get("usage")
            self.usage.update(usage if isinstance(usage, dict) else {})   # cumulative counts
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "error":
            error = event.get("error") or {}
            status = ERROR_STATUS.get(error.get("type"), 500)
            raise BackendError(f"server error in stream: {error.get('type', 'error')}: "
                               f"{redact(str(error.get('message', '')))[:200]}",
                               retryable=status in RETRYABLE_STATUS, status=status)

    def reply(self, request: Request) -> Reply:
        """The Reply of the whole message: its content blocks in index order, as a response carries them,
        but a tool's input as the JSON text its pieces make (cut JSON stays as it came: the caller's
        validation rejects it)."""
        blocks = []
        for _, block in sorted(self.blocks.items()):
            joined = "".join(block["pieces"])
            if block["type"] == "tool_use":
                blocks.append({"type": "tool_use", "name": block["name"], "input_json": joined or "{}"})
            else:
                blocks.append({"type": block["type"], "text": joined})
        return _reply(blocks, self.stop_reason, self.usage, request)


def _reply(blocks: list, stop_reason: str | None, usage, request: Request) -> Reply:
    text = _answer_text(blocks, request)
    return counted_reply(text, "length" if stop_reason == "max_tokens" else "stop", request=request,
                         prompt_tokens=token_count(usage, *INPUT_FIELDS),
                         completion_tokens=token_count(usage, "output_tokens"))


def _answer_text(blocks: list, request: Request) -> str:
    """The text blocks joined; for a structured request the forced tool's `input` as JSON (a streamed
    block's `input_json` text as it came; no tool_use block: the text, which the caller's validation
    then refuses)."""
    if request.schema is not None:
        for b in blocks:
            if isinstance(b, dict) and b.get("type") == "tool_use" and b.get("name") == request.schema_name:
                return b["input_json"] if "input_json" in b else orjson.dumps(b.get("input")).decode()
    return "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
