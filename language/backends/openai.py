"""OpenAI-compatible chat completions (vLLM, llama.cpp server, LM Studio, hosted APIs)."""

from __future__ import annotations

import httpx

from .base import Backend, BackendError, Reply, Request, counted_reply, decoding_schema, token_count


def response_format(schema: dict, name: str) -> dict:
    """OpenAI's structured-output request: `response_format` of type json_schema (vLLM and llama.cpp's
    server constrain decoding to it, in its decoding_schema form).  `strict` only for a schema that
    OpenAI's strict mode accepts (every object lists all its properties as required and forbids others):
    OpenAI refuses any other with a 400."""
    schema = decoding_schema(schema)
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": _strict_ok(schema)}}


def _strict_ok(node) -> bool:
    if isinstance(node, list):
        return all(_strict_ok(x) for x in node)
    if not isinstance(node, dict):
        return True
    if "properties" in node and (node.get("additionalProperties") is not False
                                 or set(node.get("required", ())) != set(node["properties"])):
        return False
    return all(_strict_ok(v) for k, v in node.items() if k not in ("enum", "required"))


class OpenAIBackend(Backend):
    type = "openai"
    llama_cpp_options = False  # llama.cpp's server also takes repeat_penalty; hosted APIs may refuse it

    def headers(self) -> dict:
        return {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    async def generate(self, client: httpx.AsyncClient, endpoint: str, request: Request) -> Reply:
        body = {"model": request.model, "temperature": request.temperature, "max_tokens": request.max_tokens,
                "seed": request.seed, "stream": False,
                "messages": [{"role": "system", "content": request.system},
                             {"role": "user", "content": request.prompt}]}
        if self.llama_cpp_options and request.repeat_penalty != 1.0:
            body["repeat_penalty"] = request.repeat_penalty
        if request.schema is not None:
            body["response_format"] = response_format(request.schema, request.schema_name)
        data = await self.post_json(client, f"{endpoint}/v1/chat/completions", body, headers=self.headers(),
                                    model=request.model)
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"]
            finish = choice.get("finish_reason") or "stop"
        except (KeyError, IndexError, TypeError):
            raise BackendError("unexpected response: no choices[0].message.content", retryable=True) from None
        if not isinstance(text, str):
            raise BackendError("unexpected response: content is not text", retryable=True)
        usage = data.get("usage")
        return counted_reply(text, "length" if finish == "length" else "stop", request=request,
                             prompt_tokens=token_count(usage, "prompt_tokens"),
                             completion_tokens=token_count(usage, "completion_tokens"))
