"""What every backend is: a small class that turns a Request into a Reply over one wire format.

Failures are BackendError with a reason and whether a retry may help (timeouts, 408, 429, 5xx,
cut streams, invalid JSON) and how long the server asked us to wait (Retry-After).  Messages never
contain an API key: `redact` removes it from anything that might echo it.

A Request with a `schema` asks for a JSON answer through the wire format's structured-output field
(Ollama `format`, OpenAI `response_format`, Anthropic a forced tool, Gemini `responseSchema`); the
Reply's text is then that JSON, which the caller parses and validates (language/verify.py).

Token counts come from the server's answer; a count the server does not give is estimated at one
token per CHARS_PER_TOKEN characters (system prompt and prompt for the input, the answer for the
output), and the Reply says so (`tokens_estimated`).
"""

from __future__ import annotations

import contextlib
import email.utils
import time
from dataclasses import dataclass

import httpx
import orjson

RETRYABLE_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))
CHARS_PER_TOKEN = 4   # the usual rule of thumb for English text with BPE tokenizers (an approximation)


@dataclass(frozen=True)
class Request:
    model: str
    system: str
    prompt: str
    temperature: float
    max_tokens: int
    seed: int
    context: dict | None = None  # the item's fields (term, category, ...) for the static backend
    repeat_penalty: float = 1.0
    # a structured answer: the JSON schema the answer must follow, asked for through the backend's own
    # structured-output mechanism (None: free text), and the name that mechanism gives it
    schema: dict | None = None
    schema_name: str = "answer"


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str          # "stop" or "length" (truncated)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_estimated: bool = False   # a count was missing from the server's answer and was estimated


def decoding_schema(schema):
    """`schema` for a constrained decoder (llama.cpp's server and Ollama turn it into a grammar; Gemini
    reads anyOf as a union of types): an anyOf whose alternatives only require keys (a rule on which
    keys appear, with no type) becomes an anyOf of whole typed nodes, each the node itself with the
    alternative's keys required too.  Those decoders read an anyOf as the whole node: as it was, the
    evidence object's "value or values" rule made an evidence item any value at all."""
    if isinstance(schema, list):
        return [decoding_schema(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    node = {k: decoding_schema(v) for k, v in schema.items() if k != "anyOf"}
    options = schema.get("anyOf")
    if options is None:
        return node
    if not all(isinstance(a, dict) and set(a) <= {"required"} for a in options):
        return {**node, "anyOf": decoding_schema(options)}
    required = list(node.get("required", ()))
    return {"anyOf": [{**node, "required": required + [k for k in a.get("required", ()) if k not in required]}
                      for a in options]}


def estimate_tokens(text: str) -> int:
    """A token count for text whose server did not say: one token per CHARS_PER_TOKEN characters."""
    return -(-len(text) // CHARS_PER_TOKEN)


def counted_reply(text: str, finish_reason: str, *, request: Request, prompt_tokens: int | None,
                  completion_tokens: int | None) -> Reply:
    """A Reply with the server's token counts; a count it did not give (None) is estimated."""
    estimated = prompt_tokens is None or completion_tokens is None
    if prompt_tokens is None:
        prompt_tokens = estimate_tokens(request.system) + estimate_tokens(request.prompt)
    if completion_tokens is None:
        completion_tokens = estimate_tokens(text)
    return Reply(text, finish_reason, prompt_tokens, completion_tokens, estimated)


def token_count(usage: object, *fields: str) -> int | None:
    """The sum of the whole-number fields of a usage object that are present; None when none is."""
    if not isinstance(usage, dict):
        return None
    counts = [usage[f] for f in fields if isinstance(usage.get(f), int) and not isinstance(usage[f], bool)
              and usage[f] >= 0]
    return sum(counts) if counts else None


class BackendError(Exception):
    def __init__(self, reason: str, *, retryable: bool, status: int | None = None,
                 retry_after: float | None = None, model_missing: bool = False):
        super().__init__(reason)
        self.reason, self.retryable, self.status = reason, retryable, status
        self.retry_after, self.model_missing = retry_after, model_missing


class Backend:
    """Base: holds the spec and the API key; subclasses implement `generate`."""

    type = "base"
    model_type = "remote"
    # what a models.yaml entry of this type must give: endpoint URLs (a remote server), an API key
    # (the environment variable `api_key_env` names must be set); the endpoints are checked when
    # settings load, the key when the backend is built
    needs_endpoint = True
    needs_key = False

    def __init__(self, spec, api_key: str | None = None):
        self.spec = spec
        self.name = spec.name
        self._api_key = api_key

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self.spec.endpoints

    async def start(self) -> None:
        """Bring up whatever the backend needs (the embedded server); no-op for remote ones."""

    async def close(self) -> None:
        """Release what `start` brought up."""

    async def generate(self, client: httpx.AsyncClient, endpoint: str, request: Request) -> Reply:
        raise NotImplementedError

    def redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]") if self._api_key else text

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({self.name!r})"

    # ---------------------------------------------------------------- HTTP helpers
    @contextlib.contextmanager
    def transport_errors(self, cut: str = "connection reset"):
        """Turn httpx's transport failures into retryable BackendErrors (keys redacted)."""
        try:
            yield
        except httpx.TimeoutException:
            raise BackendError("timeout", retryable=True) from None
        except httpx.ConnectError as exc:
            raise BackendError(f"connection failed: {self.redact(str(exc)) or 'refused'}", retryable=True) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise BackendError(f"{cut}: {self.redact(str(exc))}", retryable=True) from None

    async def post_json(self, client: httpx.AsyncClient, url: str, body: dict, *, headers: dict | None = None,
                        model: str = "") -> dict:
        with self.transport_errors():
            response = await client.post(url, content=orjson.dumps(body),
                                         headers={"content-type": "application/json", **(headers or {})})
        self.raise_for_status(response, model)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise BackendError("invalid JSON in the response", retryable=True, status=response.status_code) from None
        if not isinstance(data, dict):
            raise BackendError("unexpected response: not a JSON object", retryable=True)
        return data

    def raise_for_status(self, response: httpx.Response, model: str) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = self.redact(_error_detail(response))
        if status == 404:
            raise BackendError(f"HTTP 404: model {model!r} not found ({detail})", retryable=False,
                               status=status, model_missing=True)
        raise BackendError(f"HTTP {status}: {detail}", retryable=status in RETRYABLE_STATUS, status=status,
                           retry_after=retry_after_seconds(response.headers.get("retry-after")))


def _error_detail(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:120].strip() or response.reason_phrase
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, dict):
        return str(err.get("message") or err.get("type") or err)[:200]
    return str(err)[:200]


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
