"""Google Gemini generateContent (the key goes in the x-goog-api-key header, never the URL)."""

from __future__ import annotations

import httpx

from .base import Backend, BackendError, Reply, Request, counted_reply, token_count


class GeminiBackend(Backend):
    type = "gemini"
    needs_key = True

    async def generate(self, client: httpx.AsyncClient, endpoint: str, request: Request) -> Reply:
        body = {"contents": [{"role": "user", "parts": [{"text": request.prompt}]}],
                "systemInstruction": {"parts": [{"text": request.system}]},
                "generationConfig": {"temperature": request.temperature, "maxOutputTokens": request.max_tokens,
                                     "seed": request.seed}}
        headers = {"x-goog-api-key": self._api_key} if self._api_key else {}
        data = await self.post_json(client, f"{endpoint}/v1beta/models/{request.model}:generateContent",
                                    body, headers, request.model)
        try:
            candidate = data["candidates"][0]
            parts = candidate["content"]["parts"]
        except (KeyError, IndexError, TypeError):
            raise BackendError("unexpected response: no candidates[0].content.parts", retryable=True) from None
        text = "".join(p.get("text", "") for p in parts if isinstance(p, dict))
        usage = data.get("usageMetadata")  # a thinking model's thoughts are output tokens (billed as such)
        return counted_reply(text, "length" if candidate.get("finishReason") == "MAX_TOKENS" else "stop", request,
                             token_count(usage, "promptTokenCount"),
                             token_count(usage, "candidatesTokenCount", "thoughtsTokenCount"))
