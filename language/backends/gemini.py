"""Google Gemini generateContent (the key goes in the x-goog-api-key header, never the URL)."""

from __future__ import annotations

import httpx

from .base import Backend, BackendError, Reply, Request, counted_reply, decoding_schema, token_count


# the fields of Gemini's Schema object (a subset of OpenAPI 3.0's) that a JSON schema may carry over;
# Gemini refuses a request whose responseSchema holds any other ("Unknown name ...")
SCHEMA_FIELDS = frozenset({"type", "format", "title", "description", "nullable", "enum", "items", "minItems",
                           "maxItems", "properties", "required", "minLength", "maxLength", "pattern",
                           "minimum", "maximum", "anyOf", "propertyOrdering"})


def response_schema(schema: dict) -> dict:
    """A JSON schema as Gemini's responseSchema: upper-case types, a ["T", "null"] type as T with
    nullable, properties in the schema's order (propertyOrdering), and the keywords the Schema object
    lacks ($schema, additionalProperties, ...) left out; an anyOf of bare `required` alternatives (no
    types: a rule on keys, not a type) is left out as well, the caller's validation still applies it."""
    out: dict = {}
    types = schema.get("type")
    if isinstance(types, list):
        named = [t for t in types if t != "null"]
        out["type"] = named[0].upper() if len(named) == 1 else None
        if "null" in types:
            out["nullable"] = True
    elif isinstance(types, str):
        out["type"] = types.upper()
    for key, value in schema.items():
        if key == "type" or key not in SCHEMA_FIELDS:
            continue
        if key == "properties":
            out[key] = {k: response_schema(v) for k, v in value.items()}
            out["propertyOrdering"] = list(value)
        elif key == "items":
            out[key] = response_schema(value)
        elif key == "anyOf":
            alternatives = [response_schema(v) for v in value if "type" in v]
            if alternatives:
                out[key] = alternatives
        else:
            out[key] = value
    return {k: v for k, v in out.items() if v is not None}


class GeminiBackend(Backend):
    type = "gemini"
    needs_key = True

    async def generate(self, client: httpx.AsyncClient, endpoint: str, request: Request) -> Reply:
        body = {"contents": [{"role": "user", "parts": [{"text": request.prompt}]}],
                "systemInstruction": {"parts": [{"text": request.system}]},
                "generationConfig": {"temperature": request.temperature, "maxOutputTokens": request.max_tokens,
                                     "seed": request.seed}}
        if request.schema is not None:  # structured output: JSON constrained to the schema
            body["generationConfig"].update(responseMimeType="application/json",
                                            responseSchema=response_schema(decoding_schema(request.schema)))
        headers = {"x-goog-api-key": self._api_key} if self._api_key else {}
        data = await self.post_json(client, f"{endpoint}/v1beta/models/{request.model}:generateContent",
                                    body, headers=headers, model=request.model)
        try:
            candidate = data["candidates"][0]
            parts = candidate["content"]["parts"]
        except (KeyError, IndexError, TypeError):
            raise BackendError("unexpected response: no candidates[0].content.parts", retryable=True) from None
        text = "".join(p.get("text", "") for p in parts if isinstance(p, dict))
        usage = data.get("usageMetadata")  # a thinking model's thoughts are output tokens (billed as such)
        return counted_reply(text, "length" if candidate.get("finishReason") == "MAX_TOKENS" else "stop",
                             request=request,
                             prompt_tokens=token_count(usage, "promptTokenCount"),
                             completion_tokens=token_count(usage, "candidatesTokenCount", "thoughtsTokenCount"))
