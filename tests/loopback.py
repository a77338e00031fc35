"""Fake LLM servers on 127.0.0.1 for the language tests: real HTTP, real wire formats, faults on demand.

One `LoopbackServer` speaks four APIs at once on one ephemeral port, each as its vendor documents it:

* OpenAI-compatible: ``GET /v1/models``, ``POST /v1/chat/completions`` (JSON, or SSE ``data:`` chunks
  ending with ``data: [DONE]``; ``stream_options.include_usage`` adds the usage-only chunk).
* Ollama: ``GET /api/tags``, ``GET /api/version``, ``GET /``, ``POST /api/chat`` and ``POST /api/generate``
  (``stream`` defaults to TRUE as in Ollama: NDJSON, ``application/x-ndjson``).
* Anthropic Messages: ``POST /v1/messages`` (JSON, or SSE events ``message_start`` .. ``message_stop``);
  ``GET /v1/models`` answers in Anthropic's list format when the request carries ``anthropic-version``.
  A request without the ``anthropic-version`` header gets the real 400, as does one without ``max_tokens``.
* Gemini: ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent`` (``?alt=sse`` gives
  SSE, otherwise a JSON array), ``GET /v1beta/models`` and ``GET /v1beta/models/{model}``; ``/v1/`` works too.

Answers come from ``answer(model, messages, options)`` (default `deterministic_answer`), where ``messages``
is always OpenAI-shaped (``[{"role": "system"|"user"|"assistant", "content": str}]``, Anthropic's ``system``
and Gemini's ``systemInstruction`` becoming a leading system message, Gemini's ``model`` role becoming
``assistant``), ``model`` is the requested name without an Ollama ``:latest`` suffix, and ``options`` is
``{"api", "seed", "temperature", "max_tokens", "stream"}`` gathered from wherever that API puts them
(``max_tokens`` is max_completion_tokens/max_tokens, num_predict, max_tokens, maxOutputTokens; None if unset),
and ``schema``, the JSON schema of a structured-output request as that API carries it (None: free text):
OpenAI ``response_format`` ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``, Ollama
``format`` (a schema object, or "json"), Anthropic the ``input_schema`` of the tool ``tool_choice``
``{"type": "tool", "name"}`` forces (the answer, which must then be a JSON object, comes back as that tool's
``tool_use`` block, streamed as ``input_json_delta`` pieces), Gemini ``generationConfig.responseSchema`` (Gemini's
OpenAPI subset: upper-case types, only the Schema object's fields, ``responseMimeType`` application/json;
anything else is Gemini's 400). Each API refuses a malformed request of that kind with its own 400. With a
schema, the default answer is a valid instance of it whose strings hold the deterministic text.
An answer longer than the token limit (counted in words) is cut to that many words and reported as
``length`` / ``max_tokens`` / ``MAX_TOKENS``. Token counts are word counts (the prompt's: every message's words),
reported where each API reports them: OpenAI ``usage.prompt_tokens``/``completion_tokens`` (streamed: in the
``include_usage`` chunk), Ollama ``prompt_eval_count``/``eval_count`` in the final object or chunk, Anthropic
``usage.input_tokens``/``output_tokens`` (streamed: ``message_start`` and ``message_delta``), Gemini
``usageMetadata.promptTokenCount``/``candidatesTokenCount``. ``report_usage=False`` leaves every token count out
of the answers, as a server that does not count them would.

The server runs an asyncio loop in one daemon thread (HTTP/1.1, keep-alive, chunked streaming responses),
so per-request work is a few dozen microseconds; `stop()` closes every connection and joins the thread.

Every request is logged in ``server.calls`` as a `Call`; ``outcome`` is "ok", the name of the fault that
fired ("429", "500", "503", "529", "garbage", "cut", "slow", "reset", "unknown_model"), "unknown_model" for a
model the server does not have, "bad_request", "unauthorized" (only with ``api_key=``), "not_found" (unknown
path) or "answer_error" (the `answer` callable raised; the client got the API's 500, the exception is in
``server.errors``). Faults apply only to generation requests, never to model listings. A 429 with
``retry_after`` sends ``Retry-After: <seconds>`` (``%g``, so 0.25 -> "0.25"; OpenAI also gets
``retry-after-ms``; Gemini's body carries a RetryInfo ``retryDelay``). "cut" sends half the stream (chunked,
no terminating chunk) or half a body under a larger Content-Length, then closes: httpx raises
RemoteProtocolError. "reset" closes with SO_LINGER 0 (RST) before any response: httpx raises ReadError.

Import it as ``from loopback import ...`` (pytest puts tests/ on sys.path).

    with LoopbackServer(faults=FaultPlan([Rule("429", times=2, retry_after=0.1)])) as server:
        httpx.post(server.url + "/v1/chat/completions", json={...})
        server.calls_for("/v1/chat")[0].outcome == "429"
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote

from language.quality import requested_length

try:  # a project dependency; the stdlib is the fallback
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    _loads = orjson.loads
except ImportError:  # pragma: no cover
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    _loads = json.loads

__all__ = ["LoopbackServer", "Call", "FaultPlan", "Rule", "ACTIONS", "deterministic_answer"]

# ---------------------------------------------------------------------------------------------------------
# deterministic answers

_SUBJECTS = (
    "the JVM heap", "the G1 collector", "the old generation", "the young generation", "metaspace",
    "the code cache", "the JIT compiler", "the direct buffer pool", "the safepoint log", "the thread pool",
    "the finalizer queue", "the parallel collector", "the ZGC cycle", "the class loader",
    "the kernel", "the OOM killer", "the page cache", "the swap partition", "the systemd unit",
    "the cgroup memory limit", "the run queue", "the softirq handler", "the NUMA balancer",
    "the hugepage pool", "the slab allocator", "dirty page writeback", "the ext4 journal",
    "the XFS log", "the LVM snapshot", "the NFS mount", "the multipath daemon", "the TCP backlog",
    "the conntrack table", "the ephemeral port range", "the file descriptor table", "the inode cache",
    "the chrony daemon", "the journald buffer", "the auditd queue", "the tuned profile",
    "the Splunk indexer", "the search head", "the universal forwarder", "the heavy forwarder",
    "the deployment server", "the license manager", "the cluster manager", "the KV store",
    "the parsing queue", "the typing queue", "the indexing queue", "the hot bucket", "the warm bucket",
    "the summary index", "data model acceleration", "the scheduled search", "the search peer",
    "the EGO master", "the EGO service controller", "the resource group", "the instance group",
    "the Spark executor", "the session scheduler", "the consumer tree", "the slot allocation policy",
    "the Conductor management console", "the Spark driver", "the notebook service", "the lim daemon",
    "the PEM agent", "the shuffle service", "the batch scheduler",
)
_VERBS = (
    "grows steadily during", "spikes sharply after", "stalls whenever", "recovers slowly after",
    "saturates under", "drifts upward during", "falls behind during", "competes for memory with",
    "blocks on", "gets throttled by", "starves during", "evicts pages during", "rolls over ahead of",
    "logs warnings about", "lags behind", "retries aggressively against", "waits on",
    "raises alerts during", "doubles its latency during", "slows to a crawl after", "holds locks through",
    "leaks handles during", "flaps repeatedly during", "drops connections during", "times out under",
    "queues requests behind", "burns CPU during", "fragments badly after", "pauses for seconds during",
    "reports stale data after", "loses heartbeats during", "restarts unexpectedly after",
)
_CONTEXTS = (
    "the nightly batch window", "a full garbage collection", "log rotation", "a burst of ingest traffic",
    "the weekly backup", "a rolling restart", "the Monday morning peak", "a kernel upgrade",
    "a certificate renewal", "the quarter-end reporting run", "a failover test", "heavy shuffle writes",
    "a large Spark join", "a runaway regex search", "a network partition", "a storage controller failover",
    "an index rebuild", "a bucket freeze", "the month-end settlement jobs", "a DNS outage",
    "a surge of authentication requests", "a slow disk", "a noisy neighbour on the hypervisor",
    "an accidental fork bomb", "a misconfigured cron job", "a patching window", "a license warning",
    "a replication backlog", "the data retention sweep", "a burst of HTTP 503 errors",
    "a memory-hungry notebook", "an undersized resource plan",
)
_METRICS = (
    "CPU utilisation", "iowait", "steal time", "load average", "heap occupancy", "GC pause time",
    "allocation rate", "promotion rate", "indexing latency", "search concurrency", "queue fill ratio",
    "swap usage", "context switches", "disk latency", "open file descriptors", "slot utilisation",
    "task backlog", "TCP retransmits", "inode usage", "page faults", "thread count", "socket backlog",
    "network throughput", "forwarder throughput", "skipped searches", "bucket count", "memory pressure",
    "run queue length", "executor failures", "pending allocations", "response time", "error rate",
)
_ACTIONS = (
    "raising the heap limit", "adding indexer capacity", "tuning vm.swappiness",
    "restarting the forwarder", "rebalancing the buckets", "pinning executors to NUMA nodes",
    "enabling G1 string deduplication", "increasing the slot count", "shortening the retention period",
    "moving the journal to faster disks", "splitting the resource group", "lowering search concurrency",
    "throttling the noisy tenant", "raising the open files limit", "enabling transparent hugepages",
    "disabling transparent hugepages", "reducing the young generation size", "adding a search peer",
    "rescheduling the batch jobs", "widening the ephemeral port range", "setting a cgroup memory cap",
    "upgrading the JDK", "tightening the alert thresholds", "offloading cold buckets",
    "enlarging the parsing queue", "capping the executor memory", "spreading the cron jobs",
    "adding swap space", "raising the TCP backlog", "pruning old snapshots",
)
_TOOLS = (
    "vmstat", "iostat", "sar", "top", "pidstat", "jstat", "jcmd", "jmap", "perf", "dmesg", "journalctl",
    "ss", "numastat", "free", "the monitoring console", "the EGO command line", "btop", "nmon", "strace",
    "the Conductor dashboard", "the index inspector", "the job inspector",
)
_HOSTS = ("idx", "sh", "fwd", "app", "db", "cn", "web", "batch", "ego", "spark", "nfs", "mq", "hf", "lb")
_CLUSTERS = ("production", "staging", "analytics", "trading", "payments", "reporting", "risk", "archive")
_OPENERS = ("In practice,", "Usually,", "On busy days,", "As a rule,", "In most incidents,", "Over time,",
            "After a restart,", "During peak load,", "Sometimes", "Most of the time,")
_TEMPLATES = (
    "{O} {s} {v} {c} on {h}.",
    "On {h}, {m} reached {p} percent while {s} {v} {c}.",
    "Check {m} with {t} on {h} before {a}.",
    "A common fix is {a}, which usually brings {m} back under {p} percent.",
    "When {m} stays above {p} percent for {n} minutes, {s} {v} {c}.",
    "The {t} output from {h} shows {m} climbing by {p} percent.",
    "{S} on {h} logged {k} warnings about {m} during {c}.",
    "It helps to correlate {m} with {m2} across the {cl} cluster.",
    "Operators on the {cl} team prefer {a} over {a2}.",
    "{O} {a} cut {m} by {p} percent on {h}.",
    "Watch {m} on {h}; {s} {v} {c}.",
    "Before {a}, capture {t} samples every {n} seconds.",
    "{S} {v} {c}, so alerts on {m} fire within {n} minutes.",
    "The {cl} runbook suggests {a} once {m} passes {p} percent.",
)


def _hash_ints(seed: bytes):
    """32-bit integers drawn from sha256(seed || counter): the same seed always gives the same stream."""
    for counter in itertools.count():
        yield from struct.unpack("<8I", hashlib.sha256(seed + counter.to_bytes(8, "little")).digest())


def _last_user(messages: list[dict]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return m.get("content") or ""
    return ""


def deterministic_answer(model: str, messages: list[dict], options: dict) -> str:
    """Plausible operations English, a function of model, last user message and seed: 40-90 words, or,
    when the message asks for a length ("120-220 words"), that many, opened by the message's own words
    (so the answer names its term, as the relevance gate of language/relevance.py asks); for a
    structured request, a valid instance of its schema with that text in every free string."""
    text = _answer_for(str(model), _last_user(messages), str(options.get("seed")))
    if options.get("schema") is not None:
        return json.dumps(schema_instance(options["schema"], text))
    return text


def schema_instance(schema: Any, text: str) -> Any:
    """A value that follows `schema` (JSON Schema, or Gemini's upper-case subset): every property, the first
    enum value or anyOf alternative, null where allowed, `text` for free strings (cut to maxLength), the fewest array items."""
    if not isinstance(schema, dict):
        return text
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("anyOf"):
        return schema_instance(schema["anyOf"][0], text)
    types = schema.get("type", "object" if "properties" in schema else "string")
    names = [str(t).lower() for t in (types if isinstance(types, list) else [types])]
    if "null" in names or schema.get("nullable"):
        return None
    kind = names[0]
    if kind == "object":
        return {k: schema_instance(v, text) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [schema_instance(schema.get("items"), text) for _ in range(int(schema.get("minItems", 0)))]
    if kind in ("number", "integer"):
        return 1
    if kind == "boolean":
        return True
    return text[:int(schema.get("maxLength", len(text)))]


def _topic(prompt: str) -> str:
    """A sentence of the prompt's distinct words (but the commonest short ones), in order: the answer's opening."""
    common = {"a", "an", "the", "of", "in", "on", "at", "to", "for", "and", "or", "by", "with", "is", "are", "it"}
    words = dict.fromkeys(w for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9]", prompt)
                          if w.lower() not in common)
    return "Notes on " + ", ".join(words) + "."


@functools.lru_cache(maxsize=4096)
def _answer_for(model: str, prompt: str, seed: str) -> str:
    ints = _hash_ints(hashlib.sha256(f"{model}\x00{prompt}\x00{seed}".encode()).digest())

    def below(n: int) -> int:
        return next(ints) % n

    def pick(seq):
        return seq[next(ints) % len(seq)]

    asked = requested_length(prompt)
    if asked is None:
        target, most = 40 + below(41), 90
        sentences: list[str] = []
    else:
        low, most = max(asked[0], 40), max(asked[1], 40)
        target = min(low + below(most - low + 1), most - 20)  # room for the last sentence below `most`
        sentences = [_topic(prompt)]
    words = sum(t.count(" ") + 1 for t in sentences)
    while words < target:
        t = pick(_TEMPLATES)
        m = pick(_METRICS)
        a = pick(_ACTIONS)
        s = pick(_SUBJECTS)
        text = t.format(
            O=pick(_OPENERS), s=s, S=s[0].upper() + s[1:], v=pick(_VERBS), c=pick(_CONTEXTS),
            h=f"{pick(_HOSTS)}-{1 + below(64):02d}", m=m,
            m2=_METRICS[(_METRICS.index(m) + 1 + below(len(_METRICS) - 1)) % len(_METRICS)],
            p=50 + below(50), n=2 + below(58), k=3 + below(400), t=pick(_TOOLS),
            a=a, a2=_ACTIONS[(_ACTIONS.index(a) + 1 + below(len(_ACTIONS) - 1)) % len(_ACTIONS)],
            cl=pick(_CLUSTERS))
        n = text.count(" ") + 1
        if words + n > most:   # too long to fit: draw another sentence (short ones have <= 16 words)
            continue
        sentences.append(text)
        words += n
    return " ".join(sentences)


# ---------------------------------------------------------------------------------------------------------
# faults

ACTIONS = ("429", "500", "503", "529", "garbage", "cut", "slow", "reset", "unknown_model")


@dataclass
class Rule:
    """One fault: `action` on requests matching `model` and `prompt_contains`, at most `times` times."""

    action: str
    times: int | None = 1
    model: str | None = None
    prompt_contains: str | None = None
    retry_after: float | None = None   # "429": sent as Retry-After (seconds)
    seconds: float = 0.0               # "slow": delay before a normal answer

    def __post_init__(self):
        self.action = str(self.action)
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; expected one of {', '.join(ACTIONS)}")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None")


class FaultPlan:
    """Rules tried in order on each generation request; the first matching rule with uses left fires."""

    def __init__(self, rules: list[Rule]):
        self.rules = list(rules)
        self.fired = [0] * len(self.rules)   # how often each rule fired
        self._lock = threading.Lock()

    def match(self, model: str | None, prompt: str | None) -> Rule | None:
        with self._lock:
            for i, r in enumerate(self.rules):
                if r.times is not None and self.fired[i] >= r.times:
                    continue
                if r.model is not None and _canonical(r.model) != _canonical(model or ""):
                    continue
                if r.prompt_contains is not None and r.prompt_contains not in (prompt or ""):
                    continue
                self.fired[i] += 1
                return r
        return None

    def __repr__(self):
        return f"FaultPlan({self.rules!r}, fired={self.fired})"


# ---------------------------------------------------------------------------------------------------------
# calls

@dataclass
class Call:
    path: str
    model: str | None
    prompt: str | None
    api: str
    headers: dict
    outcome: str
    time: float
    # extras beyond the brief, for tests that check what the client sent
    method: str = "POST"
    query: dict = field(default_factory=dict)
    body: Any = None          # the parsed JSON request body (None for GETs or unparseable bodies)
    stream: bool = False


_USAGE_KEYS = frozenset({"usage", "usageMetadata", "prompt_eval_count", "eval_count", "prompt_eval_duration",
                         "eval_duration"})


def _drop_usage(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_usage(v) for k, v in obj.items() if k not in _USAGE_KEYS}
    if isinstance(obj, list):
        return [_drop_usage(v) for v in obj]
    return obj


def _without_usage(data: bytes) -> bytes:
    """A body, NDJSON line, SSE event or JSON-array piece with its JSON object's token counts left out."""
    start, end = data.find(b"{"), data.rfind(b"}")
    if start < 0 or end < start:
        return data
    return data[:start] + _dumps(_drop_usage(_loads(data[start:end + 1]))) + data[end + 1:]


def _canonical(model: str) -> str:
    return model[:-7] if model.endswith(":latest") else model


class _BadRequest(Exception):
    def __init__(self, status: int, body: bytes, headers: tuple = ()):
        self.status, self.body, self.headers = status, body, headers


# ---------------------------------------------------------------------------------------------------------
# per-API wire formats

_WORD = re.compile(r"\s*\S+|\s+$")


def _pieces(text: str) -> list[str]:
    """Words with their leading whitespace; ''.join(pieces) == text."""
    return _WORD.findall(text)


def _fragments(text: str, per: int = 3) -> list[str]:
    p = _pieces(text)
    return ["".join(p[i:i + per]) for i in range(0, len(p), per)] or [""]


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content) -> str:
    """A message content: a string, or a list of parts/blocks whose text parts are joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
        return "".join(out)
    return "" if content is None else str(content)


@dataclass
class _Gen:
    model: str
    messages: list
    options: dict
    stream: bool
    limit: int | None
    extra: dict = field(default_factory=dict)


class _OpenAI:
    name = "openai"
    ctype = b"application/json"

    @staticmethod
    def err(status: int, message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
        return _dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})

    def parse(self, data: dict, req) -> _Gen:
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest(400, self.err(400, "you must provide a model parameter", "invalid_request_error"))
        msgs = data.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise _BadRequest(400, self.err(400, "Missing required parameter: 'messages'.", "invalid_request_error",
                                            "missing_required_parameter", "messages"))
        limit = data.get("max_completion_tokens", data.get("max_tokens"))
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            name = "max_completion_tokens" if "max_completion_tokens" in data else "max_tokens"
            raise _BadRequest(400, self.err(400, f"Invalid '{name}': integer below minimum value. Expected a value "
                                                 f">= 1, but got {limit} instead.", "invalid_request_error",
                                            "integer_below_min_value", name))
        messages = [{"role": m.get("role", "user"), "content": _text_of(m.get("content"))}
                    for m in msgs if isinstance(m, dict)]
        stream = bool(data.get("stream", False))
        so = data.get("stream_options") or {}
        return _Gen(model, messages, {"seed": data.get("seed"), "temperature": data.get("temperature"),
                                      "schema": self._schema(data.get("response_format"))},
                    stream, limit, {"include_usage": bool(isinstance(so, dict) and so.get("include_usage"))})

    def _schema(self, rf) -> dict | None:
        """The schema of a response_format; None for none or text; a json_object asks for any object."""
        if rf is None:
            return None
        kind = rf.get("type") if isinstance(rf, dict) else None
        if kind not in ("text", "json_object", "json_schema"):
            raise _BadRequest(400, self.err(400, f"Invalid value: '{kind}'. Supported values are: 'text', "
                                                 "'json_object', and 'json_schema'.", "invalid_request_error",
                                            "invalid_value", "response_format.type"))
        if kind == "text":
            return None
        if kind == "json_object":
            return {"type": "object"}
        js = rf.get("json_schema")
        if not isinstance(js, dict) or "name" not in js:
            raise _BadRequest(400, self.err(400, "Missing required parameter: 'response_format.json_schema.name'.",
                                            "invalid_request_error", "missing_required_parameter",
                                            "response_format.json_schema.name"))
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", str(js["name"])):
            raise _BadRequest(400, self.err(400, f"Invalid 'response_format.json_schema.name': string does not match "
                                                 f"pattern. Expected a string that matches the pattern "
                                                 f"'^[a-zA-Z0-9_-]+$'.", "invalid_request_error", "invalid_value",
                                            "response_format.json_schema.name"))
        return js.get("schema") if isinstance(js.get("schema"), dict) else {"type": "object"}

    def fault(self, status: int, gen: _Gen | None, retry_after: float | None):
        model = gen.model if gen else "model"
        if status == 429:
            wait = f"{retry_after:g}s" if retry_after is not None else "1s"
            return self.err(429, f"Rate limit reached for {model} in organization org-loopback on requests per "
                                 f"min (RPM): Limit 60, Used 60, Requested 1. Please try again in {wait}.",
                            "requests", "rate_limit_exceeded")
        if status == 500:
            return self.err(500, "The server had an error while processing your request. Sorry about that!",
                            "server_error")
        return self.err(status, "The engine is currently overloaded, please try again later.", "server_error")

    def unknown_model(self, gen: _Gen):
        return 404, self.err(404, f"The model `{gen.model}` does not exist", "invalid_request_error",
                             "model_not_found", "model")

    def unauthorized(self, key: str | None):
        if not key:
            return 401, self.err(401, "You didn't provide an API key. You need to provide your API key in an "
                                      "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                                 "invalid_request_error")
        shown = key[:3] + "*" * 6 + key[-4:] if len(key) > 8 else key
        return 401, self.err(401, f"Incorrect API key provided: {shown}. You can find your API key at "
                                  "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                             "invalid_api_key")

    def bad_json(self):
        return self.err(400, "We could not parse the JSON body of your request. (HINT: This likely means you "
                             "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                             "but what was sent was not valid JSON.)", "invalid_request_error")

    def key(self, req) -> str | None:
        auth = req.headers.get("authorization", "")
        return auth[7:] if auth[:7].lower() == "bearer " else None

    def response(self, gen, text, finish, pt, ct, rid, now):
        return _dumps({
            "id": f"chatcmpl-{rid}", "object": "chat.completion", "created": int(now), "model": gen.model,
            "system_fingerprint": "fp_loopback",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}})

    stream_ctype = b"text/event-stream"

    def events(self, gen, text, finish, pt, ct, rid, now) -> list[bytes]:
        base = {"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk", "created": int(now),
                "model": gen.model, "system_fingerprint": "fp_loopback"}
        inc = gen.extra.get("include_usage")

        def chunk(delta, fin=None):
            d = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": fin}])
            if inc:
                d["usage"] = None
            return b"data: " + _dumps(d) + b"\n\n"

        out = [chunk({"role": "assistant", "content": "", "refusal": None})]
        out += [chunk({"content": f}) for f in _fragments(text)]
        out.append(chunk({}, finish))
        if inc:
            out.append(b"data: " + _dumps(dict(base, choices=[], usage={
                "prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct})) + b"\n\n")
        out.append(b"data: [DONE]\n\n")
        return out

    def garbage_stream(self):
        return [b'data: {"id":"chatcmpl-x","object":"chat.completion.chunk","choices":[{"delta":\n\n',
                b"data: <html><body>upstream hiccup</body></html>\n\n", b"data: [DONE]\n\n"]

    def finish(self, truncated):
        return "length" if truncated else "stop"


class _Ollama:
    name = "ollama"
    ctype = b"application/json; charset=utf-8"
    stream_ctype = b"application/x-ndjson"

    @staticmethod
    def err(message: str) -> bytes:
        return _dumps({"error": message})

    def parse(self, data: dict, req) -> _Gen:
        generate = req.path == "/api/generate"
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest(400, self.err("model is required"))
        opts = data.get("options") or {}
        if not isinstance(opts, dict):
            raise _BadRequest(400, self.err("json: cannot unmarshal options"))
        if generate:
            messages = []
            if isinstance(data.get("system"), str) and data["system"]:
                messages.append({"role": "system", "content": data["system"]})
            if data.get("prompt"):
                messages.append({"role": "user", "content": _text_of(data.get("prompt"))})
        else:
            msgs = data.get("messages") or []
            if not isinstance(msgs, list):
                raise _BadRequest(400, self.err("json: cannot unmarshal messages"))
            messages = [{"role": m.get("role", "user"), "content": _text_of(m.get("content"))}
                        for m in msgs if isinstance(m, dict)]
        limit = opts.get("num_predict")
        limit = limit if isinstance(limit, int) and limit > 0 else None
        stream = data.get("stream")
        fmt = data.get("format")
        if fmt not in (None, "", "json") and not isinstance(fmt, dict):
            raise _BadRequest(400, self.err(f"invalid format: {json.dumps(fmt)}"))
        schema = {"type": "object"} if fmt == "json" else fmt or None
        return _Gen(model, messages, {"seed": opts.get("seed"), "temperature": opts.get("temperature"),
                                      "schema": schema},
                    True if stream is None else bool(stream), limit, {"generate": generate})

    def fault(self, status, gen, retry_after):
        if status == 429:
            return self.err("too many requests, please retry later")
        if status == 500:
            return self.err("an error was encountered while running the model: unexpected EOF")
        return self.err("server busy, please try again.  maximum pending requests exceeded")

    def unknown_model(self, gen):
        return 404, self.err(f'model "{gen.model}" not found, try pulling it first')

    def unauthorized(self, key):  # Ollama has no auth; a proxy in front of it answers like this
        return 401, self.err("unauthorized")

    def bad_json(self):
        return self.err("invalid character 'x' looking for beginning of value")

    def key(self, req):
        auth = req.headers.get("authorization", "")
        return auth[7:] if auth[:7].lower() == "bearer " else None

    @staticmethod
    def _stamp(now: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z"

    def _final(self, gen, finish, pt, ct, now) -> dict:
        return {"done": True, "done_reason": finish, "total_duration": 1_000_000 + ct * 20_000_000 + pt * 1_000_000,
                "load_duration": 1_000_000, "prompt_eval_count": pt, "prompt_eval_duration": pt * 1_000_000,
                "eval_count": ct, "eval_duration": ct * 20_000_000}

    def _msg(self, gen, content: str) -> dict:
        if gen.extra.get("generate"):
            return {"response": content}
        return {"message": {"role": "assistant", "content": content}}

    def response(self, gen, text, finish, pt, ct, rid, now):
        d = {"model": gen.model, "created_at": self._stamp(now)}
        d.update(self._msg(gen, text))
        d.update(self._final(gen, finish, pt, ct, now))
        if gen.extra.get("generate"):
            d["context"] = [1, 2, 3]
        return _dumps(d)

    def events(self, gen, text, finish, pt, ct, rid, now):
        stamp = self._stamp(now)
        out = []
        for f in _fragments(text):
            d = {"model": gen.model, "created_at": stamp}
            d.update(self._msg(gen, f))
            d["done"] = False
            out.append(_dumps(d) + b"\n")
        d = {"model": gen.model, "created_at": stamp}
        d.update(self._msg(gen, ""))
        d.update(self._final(gen, finish, pt, ct, now))
        if gen.extra.get("generate"):
            d["context"] = [1, 2, 3]
        out.append(_dumps(d) + b"\n")
        return out

    def garbage_stream(self):
        return [b'{"model":"x","created_at":"2024-01-01T00:00:00Z","message":{"role":"assist\n',
                b"<html>502 Bad Gateway</html>\n"]

    def finish(self, truncated):
        return "length" if truncated else "stop"


class _Anthropic:
    name = "anthropic"
    ctype = b"application/json"
    stream_ctype = b"text/event-stream; charset=utf-8"

    @staticmethod
    def err(type_: str, message: str) -> bytes:
        return _dumps({"type": "error", "error": {"type": type_, "message": message},
                       "request_id": f"req_loopback{next(_IDS):012d}"})

    def parse(self, data: dict, req) -> _Gen:
        if "anthropic-version" not in req.headers:
            raise _BadRequest(400, self.err("invalid_request_error", "anthropic-version: header is required"))
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest(400, self.err("invalid_request_error", "model: Field required"))
        if "max_tokens" not in data:
            raise _BadRequest(400, self.err("invalid_request_error", "max_tokens: Field required"))
        limit = data["max_tokens"]
        if not isinstance(limit, int) or limit < 1:
            raise _BadRequest(400, self.err("invalid_request_error",
                                            "max_tokens: Input should be greater than or equal to 1"))
        msgs = data.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise _BadRequest(400, self.err("invalid_request_error", "messages: Field required"))
        messages = []
        system = data.get("system")
        if system:
            messages.append({"role": "system", "content": _text_of(system)})
        for m in msgs:
            if isinstance(m, dict):
                if m.get("role") not in ("user", "assistant"):
                    raise _BadRequest(400, self.err("invalid_request_error",
                                                    f"messages: Unexpected role \"{m.get('role')}\". Allowed "
                                                    "roles are \"user\" or \"assistant\". For instructions or "
                                                    "context, please use the top-level \"system\" parameter."))
                messages.append({"role": m["role"], "content": _text_of(m.get("content"))})
        md = data.get("metadata")
        tool, schema = self._forced_tool(data)
        return _Gen(model, messages, {"seed": None, "temperature": data.get("temperature"), "schema": schema},
                    bool(data.get("stream", False)), limit, {"metadata": md, "tool": tool})

    def _forced_tool(self, data: dict) -> tuple[str | None, dict | None]:
        """(name, input_schema) of the tool that tool_choice {"type": "tool"} forces; (None, None) otherwise."""
        tools = data.get("tools") or []
        if not isinstance(tools, list):
            raise _BadRequest(400, self.err("invalid_request_error", "tools: Input should be a valid list"))
        named = {}
        for i, t in enumerate(tools):
            if not isinstance(t, dict) or not t.get("name"):
                raise _BadRequest(400, self.err("invalid_request_error", f"tools.{i}.custom.name: Field required"))
            schema = t.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise _BadRequest(400, self.err("invalid_request_error",
                                                f"tools.{i}.custom.input_schema.type: Input should be 'object'"))
            named[t["name"]] = schema
        choice = data.get("tool_choice")
        if not isinstance(choice, dict) or choice.get("type") != "tool":
            return None, None
        if choice.get("name") not in named:
            raise _BadRequest(400, self.err("invalid_request_error",
                                            f"Tool '{choice.get('name')}' not found in provided tools"))
        return choice["name"], named[choice["name"]]

    @staticmethod
    def _tool_input(gen, text: str):
        """The forced tool's input: the answer as a JSON object; None (a text block) when it is not one."""
        if not gen.extra.get("tool"):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def fault(self, status, gen, retry_after):
        if status == 429:
            return self.err("rate_limit_error", "This request would exceed the rate limit for your organization "
                                                "of 50 requests per minute. For details, refer to: "
                                                "https://docs.claude.com/en/api/rate-limits.")
        if status == 500:
            return self.err("api_error", "Internal server error")
        return self.err("overloaded_error", "Overloaded")

    def unknown_model(self, gen):
        return 404, self.err("not_found_error", f"model: {gen.model}")

    def unauthorized(self, key):
        if not key:
            return 401, self.err("authentication_error", "x-api-key header is required")
        return 401, self.err("authentication_error", "invalid x-api-key")

    def bad_json(self):
        return self.err("invalid_request_error", "There was an error parsing the body of your request.")

    def key(self, req):
        return req.headers.get("x-api-key")

    def response(self, gen, text, finish, pt, ct, rid, now):
        value = self._tool_input(gen, text)
        content = [{"type": "text", "text": text}] if value is None else \
            [{"type": "tool_use", "id": f"toolu_loopback{rid}", "name": gen.extra["tool"], "input": value}]
        if value is not None and finish == "end_turn":
            finish = "tool_use"
        return _dumps({"id": f"msg_loopback{rid}", "type": "message", "role": "assistant", "model": gen.model,
                       "content": content, "stop_reason": finish,
                       "stop_sequence": None, "usage": {"input_tokens": pt, "output_tokens": ct}})

    def events(self, gen, text, finish, pt, ct, rid, now):
        value = self._tool_input(gen, text)

        def ev(name: str, data: dict) -> bytes:
            return b"event: " + name.encode() + b"\ndata: " + _dumps(data) + b"\n\n"

        out = [ev("message_start", {"type": "message_start", "message": {
                   "id": f"msg_loopback{rid}", "type": "message", "role": "assistant", "model": gen.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": pt, "output_tokens": 1}}}),
               ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block":
                                          {"type": "text", "text": ""} if value is None else
                                          {"type": "tool_use", "id": f"toolu_loopback{rid}",
                                           "name": gen.extra["tool"], "input": {}}}),
               ev("ping", {"type": "ping"})]
        if value is None:
            out += [ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": f}}) for f in _fragments(text)]
        else:
            raw = json.dumps(value)
            out += [ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "input_json_delta", "partial_json": raw[i:i + 16]}})
                    for i in range(0, len(raw), 16)]
            finish = "tool_use" if finish == "end_turn" else finish
        out += [ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ev("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": finish, "stop_sequence": None},
                                     "usage": {"output_tokens": ct}}),
                ev("message_stop", {"type": "message_stop"})]
        return out

    def garbage_stream(self):
        return [b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\n\n",
                b"event: ping\ndata: <html>oops</html>\n\n"]

    def finish(self, truncated):
        return "max_tokens" if truncated else "end_turn"


class _Gemini:
    name = "gemini"
    ctype = b"application/json; charset=UTF-8"
    stream_ctype = b"text/event-stream"

    @staticmethod
    def err(code: int, message: str, status: str, details: list | None = None) -> bytes:
        e: dict = {"code": code, "message": message, "status": status}
        if details:
            e["details"] = details
        return _dumps({"error": e})

    def parse(self, data: dict, req) -> _Gen:
        model = req.gemini_model
        contents = data.get("contents")
        if not isinstance(contents, list) or not contents:
            raise _BadRequest(400, self.err(400, "* GenerateContentRequest.contents: contents is not specified\n",
                                            "INVALID_ARGUMENT"))
        messages = []
        si = data.get("systemInstruction") or data.get("system_instruction")
        if isinstance(si, dict):
            messages.append({"role": "system", "content": _text_of(si.get("parts"))})
        for c in contents:
            if isinstance(c, dict):
                role = c.get("role") or "user"
                messages.append({"role": "assistant" if role == "model" else role,
                                 "content": _text_of(c.get("parts"))})
        gc = data.get("generationConfig") or data.get("generation_config") or {}
        limit = gc.get("maxOutputTokens", gc.get("max_output_tokens"))
        limit = limit if isinstance(limit, int) and limit > 0 else None
        schema = gc.get("responseSchema")
        if schema is not None:
            if gc.get("responseMimeType") != "application/json":
                raise _BadRequest(400, self.err(400, "GenerationConfig.response_mime_type: only supports application/json"
                                                     " when response_schema is set.", "INVALID_ARGUMENT"))
            problem = self._schema_problem(schema, "generation_config.response_schema")
            if problem:
                raise _BadRequest(400, self.err(400, problem, "INVALID_ARGUMENT"))
        return _Gen(model, messages, {"seed": gc.get("seed"), "temperature": gc.get("temperature"), "schema": schema},
                    req.gemini_method == "streamGenerateContent", limit, {"sse": req.query.get("alt") == "sse"})

    SCHEMA_FIELDS = frozenset({"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                               "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                               "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
                               "maximum"})
    TYPES = frozenset({"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})

    def _schema_problem(self, node, at: str) -> str | None:
        """Gemini's 400 for a responseSchema that is not its Schema object (an unknown field, a bad type)."""
        if not isinstance(node, dict):
            return f"Invalid JSON payload received. Invalid value at '{at}': not an object."
        for key, value in node.items():
            if key not in self.SCHEMA_FIELDS:
                return f'Invalid JSON payload received. Unknown name "{key}" at \'{at}\': Cannot find field.'
            if key == "type" and value not in self.TYPES:
                return (f"Invalid JSON payload received. Invalid value at '{at}.type' "
                        f"(type.googleapis.com/google.ai.generativelanguage.v1beta.Type), {json.dumps(value)}")
        subs = [(f"{at}.properties[{k}].value", v) for k, v in (node.get("properties") or {}).items()]
        subs += [(f"{at}.items", node["items"])] if "items" in node else []
        subs += [(f"{at}.any_of[{i}]", v) for i, v in enumerate(node.get("anyOf") or [])]
        for where, sub in subs:
            problem = self._schema_problem(sub, where)
            if problem:
                return problem
        return None

    def fault(self, status, gen, retry_after):
        if status == 429:
            details = None
            if retry_after is not None:
                details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}]
            return self.err(429, "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED", details)
        if status == 500:
            return self.err(500, "An internal error has occurred. Please retry or report in "
                                 "https://developers.generativeai.google/guide/troubleshooting", "INTERNAL")
        return self.err(503, "The model is overloaded. Please try again later.", "UNAVAILABLE")

    def unknown_model(self, gen):
        return 404, self.err(404, f"models/{gen.model} is not found for API version {gen.extra.get('version', 'v1beta')}"
                                  ", or is not supported for generateContent. Call ListModels to see the list of "
                                  "available models and their supported methods.", "NOT_FOUND")

    def unauthorized(self, key):
        if not key:
            return 403, self.err(403, "Method doesn't allow unregistered callers (callers without established "
                                      "identity). Please use API Key or other form of API consumer identity to "
                                      "call this API.", "PERMISSION_DENIED")
        return 400, self.err(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT")

    def bad_json(self):
        return self.err(400, "Invalid JSON payload received. Unexpected token.", "INVALID_ARGUMENT")

    def key(self, req):
        return req.headers.get("x-goog-api-key") or req.query.get("key")

    def _chunk(self, gen, text, finish, pt, ct, rid, usage_full) -> dict:
        cand: dict = {"content": {"parts": [{"text": text}], "role": "model"}}
        if finish:
            cand["finishReason"] = finish
        cand["index"] = 0
        usage = {"promptTokenCount": pt, "candidatesTokenCount": ct, "totalTokenCount": pt + ct} if usage_full \
            else {"promptTokenCount": pt, "totalTokenCount": pt}
        return {"candidates": [cand], "usageMetadata": usage, "modelVersion": gen.model,
                "responseId": f"loopback{rid}"}

    def response(self, gen, text, finish, pt, ct, rid, now):
        return _dumps(self._chunk(gen, text, finish, pt, ct, rid, True))

    def events(self, gen, text, finish, pt, ct, rid, now):
        frags = _fragments(text)
        chunks = [self._chunk(gen, f, finish if i == len(frags) - 1 else None, pt, ct, rid, i == len(frags) - 1)
                  for i, f in enumerate(frags)]
        if gen.extra.get("sse"):
            return [b"data: " + _dumps(c) + b"\r\n\r\n" for c in chunks]
        # without alt=sse Gemini streams one JSON array
        parts = [_dumps(c) for c in chunks]
        return [b"[" + parts[0]] + [b",\r\n" + p for p in parts[1:]] + [b"]"]

    def garbage_stream(self):
        return [b'data: {"candidates": [{"content": {"parts": [{"te\r\n\r\n', b"data: <html>oops</html>\r\n\r\n"]

    def finish(self, truncated):
        return "MAX_TOKENS" if truncated else "STOP"


_APIS = {"openai": _OpenAI(), "ollama": _Ollama(), "anthropic": _Anthropic(), "gemini": _Gemini()}
_IDS = itertools.count(1)
_GARBAGE = b'<html><head><title>502 Bad Gateway</title></head><body>{"choices": [{"mess'

# ---------------------------------------------------------------------------------------------------------
# HTTP plumbing

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 413: "Payload Too Large", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 529: "Site Overloaded"}
_MAX_BODY = 32 * 1024 * 1024


class _Request:
    __slots__ = ("method", "path", "query", "headers", "body", "keep_alive", "gemini_model", "gemini_method")

    def __init__(self, method, path, query, headers, body, keep_alive):
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body
        self.keep_alive = keep_alive
        self.gemini_model = self.gemini_method = None


def _head(status: int, ctype: bytes | None, length: int | None, extra: tuple = (), close: bool = False) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "Unknown").encode())]
    if ctype is not None:
        lines.append(b"Content-Type: " + ctype + b"\r\n")
    if length is None:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    else:
        lines.append(b"Content-Length: %d\r\n" % length)
    for k, v in extra:
        lines.append(f"{k}: {v}\r\n".encode("latin-1"))
    if close:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class LoopbackServer:
    """A fake OpenAI / Ollama / Anthropic / Gemini server on 127.0.0.1:<ephemeral port>."""

    def __init__(self, models=("alpha", "beta", "gamma"), answer: Callable[[str, list, dict], str] | None = None,
                 faults: FaultPlan | None = None, delay_s: float = 0.0, api_key: str | None = None,
                 report_usage: bool = True):
        self._models = [str(m) for m in models]
        self.answer = answer or deterministic_answer
        self.faults = faults
        self.delay_s = float(delay_s)
        self.api_key = api_key          # extra: when set, requests without this key get each API's auth error
        self.report_usage = report_usage  # False: answers carry no token counts
        self.url = ""
        self.port = 0
        self.calls: list[Call] = []
        self.errors: list[BaseException] = []   # exceptions raised by `answer` (answered as HTTP 500)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[_Conn] = set()
        self._start_error: BaseException | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> "LoopbackServer":
        if self._thread is not None:
            raise RuntimeError("LoopbackServer already started")
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="loopback-server", daemon=True)
        self._thread.start()
        ready.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            try:
                self._server = loop.run_until_complete(loop.create_server(
                    lambda: _Conn(self), "127.0.0.1", 0, backlog=1024))
                self.port = self._server.sockets[0].getsockname()[1]
                self.url = f"http://127.0.0.1:{self.port}"
            except BaseException as e:  # noqa: BLE001 - handed to start()
                self._start_error = e
                return
            finally:
                ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for conn in list(self._conns):
            conn.transport.abort()      # connection_lost (next loop turn) cancels pending timers
        for _ in range(3):
            await asyncio.sleep(0)
        await self._server.wait_closed()

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._loop.stop)
            except RuntimeError:  # loop already closed
                pass
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self):
        return f"LoopbackServer({self.url or 'not started'}, models={self.models})"

    # ---- models and calls ------------------------------------------------------------------------------
    @property
    def models(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def remove_model(self, name: str) -> None:
        """From now on the model is unknown: listings omit it and requests get the API's not-found answer."""
        c = _canonical(name)
        with self._lock:
            self._models = [m for m in self._models if _canonical(m) != c]

    def add_model(self, name: str) -> None:
        with self._lock:
            if _canonical(name) not in {_canonical(m) for m in self._models}:
                self._models.append(name)

    def has_model(self, name: str | None) -> bool:
        if not name:
            return False
        c = _canonical(name)
        with self._lock:
            return any(_canonical(m) == c for m in self._models)

    def calls_for(self, path_prefix: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if path_prefix is None or c.path.startswith(path_prefix)]

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    # ---- connection handling ---------------------------------------------------------------------------
    @staticmethod
    def _parse_head(head: bytes) -> _Request | None:
        try:
            text = head.decode("latin-1")
            lines = text.split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if not line:
                    continue
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        except ValueError:
            return None
        path, _, qs = target.partition("?")
        query = dict(parse_qsl(qs, keep_blank_values=True)) if qs else {}
        conn = headers.get("connection", "").lower()
        keep = ("close" not in conn) if version == "HTTP/1.1" else ("keep-alive" in conn)
        return _Request(method, unquote(path), query, headers, b"", keep)

    @staticmethod
    def _send(conn, req, status: int, ctype: bytes | None, body: bytes, extra: tuple = ()) -> bool:
        head = _head(status, ctype, len(body), extra, close=not req.keep_alive)
        conn.transport.write(head if req.method == "HEAD" else head + body)
        return True

    # ---- routing ---------------------------------------------------------------------------------------
    def _dispatch(self, req: _Request, conn: _Conn):
        """Answer one request: True to keep the connection, False to close it, _DEFER if a timer will."""
        p, m = req.path, req.method
        if m == "POST":
            if p == "/v1/chat/completions":
                return self._generate(req, conn, _APIS["openai"])
            if p in ("/api/chat", "/api/generate"):
                return self._generate(req, conn, _APIS["ollama"])
            if p == "/v1/messages":
                return self._generate(req, conn, _APIS["anthropic"])
            g = self._gemini_route(p)
            if g is not None and g[1] in ("generateContent", "streamGenerateContent"):
                req.gemini_model, req.gemini_method = g[0], g[1]
                return self._generate(req, conn, _APIS["gemini"])
        elif m in ("GET", "HEAD"):
            if p == "/v1/models":
                return self._list_openai_or_anthropic(req, conn)
            if p.startswith("/v1/models/"):
                if "anthropic-version" in req.headers:
                    return self._get_anthropic_model(req, conn, p[len("/v1/models/"):])
                return self._get_openai_model(req, conn, p[len("/v1/models/"):])
            if p == "/api/tags":
                return self._list_ollama(req, conn)
            if p == "/api/version":
                self._record(self._plain_call(req, "ollama"))
                return self._send(conn, req, 200, _Ollama.ctype, _dumps({"version": "0.6.8"}))
            if p == "/":
                self._record(self._plain_call(req, "ollama"))
                return self._send(conn, req, 200, b"text/plain; charset=utf-8", b"Ollama is running")
            if p.rstrip("/") in ("/v1beta/models", "/v1/models") or p.startswith(("/v1beta/models/",)):
                return self._gemini_models(req, conn)
        api = "gemini" if p.startswith("/v1beta") else "ollama" if p.startswith("/api") else \
            "anthropic" if "anthropic-version" in req.headers else "openai"
        self._record(self._plain_call(req, api, outcome="not_found"))
        if m not in ("GET", "HEAD", "POST"):
            return self._send(conn, req, 405, b"text/plain", b"405 method not allowed")
        return self._send(conn, req, 404, b"text/plain", b"404 page not found")

    @staticmethod
    def _gemini_route(path: str):
        for prefix in ("/v1beta/models/", "/v1/models/", "/v1alpha/models/"):
            if path.startswith(prefix):
                rest = path[len(prefix):]
                model, sep, method = rest.rpartition(":")
                if sep and model:
                    return model, method
        return None

    def _plain_call(self, req, api, outcome="ok", model=None) -> Call:
        return Call(req.path, model, None, api, req.headers, outcome, time.time(), req.method, req.query)

    def _list_openai_or_anthropic(self, req, conn) -> bool:
        models = self.models
        if "anthropic-version" in req.headers:
            self._record(self._plain_call(req, "anthropic"))
            data = [{"type": "model", "id": m, "display_name": m.title(), "created_at": "2025-01-01T00:00:00Z"}
                    for m in models]
            body = {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None}
            return self._send(conn, req, 200, _Anthropic.ctype, _dumps(body))
        self._record(self._plain_call(req, "openai"))
        body = {"object": "list", "data": [{"id": m, "object": "model", "created": 1700000000,
                                            "owned_by": "loopback"} for m in models]}
        return self._send(conn, req, 200, _OpenAI.ctype, _dumps(body))

    def _get_openai_model(self, req, conn, name) -> bool:
        if self.has_model(name):
            self._record(self._plain_call(req, "openai", model=name))
            return self._send(conn, req, 200, _OpenAI.ctype, _dumps(
                {"id": name, "object": "model", "created": 1700000000, "owned_by": "loopback"}))
        self._record(self._plain_call(req, "openai", "unknown_model", name))
        status, body = _APIS["openai"].unknown_model(_Gen(name, [], {}, False, None))
        return self._send(conn, req, status, _OpenAI.ctype, body)

    def _get_anthropic_model(self, req, conn, name) -> bool:
        if self.has_model(name):
            self._record(self._plain_call(req, "anthropic", model=name))
            return self._send(conn, req, 200, _Anthropic.ctype, _dumps(
                {"type": "model", "id": name, "display_name": name.title(), "created_at": "2025-01-01T00:00:00Z"}))
        self._record(self._plain_call(req, "anthropic", "unknown_model", name))
        status, body = _APIS["anthropic"].unknown_model(_Gen(name, [], {}, False, None))
        return self._send(conn, req, status, _Anthropic.ctype, body)

    def _list_ollama(self, req, conn) -> bool:
        self._record(self._plain_call(req, "ollama"))
        out = []
        for m in self.models:
            name = m if ":" in m else m + ":latest"
            digest = hashlib.sha256(name.encode()).hexdigest()
            out.append({"name": name, "model": name, "modified_at": "2025-01-01T00:00:00.000000000Z",
                        "size": 1_000_000_000 + int(digest[:6], 16), "digest": digest,
                        "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                                    "parameter_size": "8.0B", "quantization_level": "Q4_K_M"}})
        return self._send(conn, req, 200, _Ollama.ctype, _dumps({"models": out}))

    def _gemini_models(self, req, conn) -> bool:
        def info(m):
            return {"name": f"models/{m}", "version": "001", "displayName": m.title(), "description": m,
                    "inputTokenLimit": 1048576, "outputTokenLimit": 8192,
                    "supportedGenerationMethods": ["generateContent", "countTokens"]}
        p = req.path.rstrip("/")
        if p in ("/v1beta/models", "/v1/models"):
            self._record(self._plain_call(req, "gemini"))
            return self._send(conn, req, 200, _Gemini.ctype, _dumps({"models": [info(m) for m in self.models]}))
        name = p.split("/models/", 1)[1]
        if self.has_model(name):
            self._record(self._plain_call(req, "gemini", model=name))
            return self._send(conn, req, 200, _Gemini.ctype, _dumps(info(name)))
        self._record(self._plain_call(req, "gemini", "unknown_model", name))
        return self._send(conn, req, 404, _Gemini.ctype, _Gemini.err(
            404, f"models/{name} is not found for API version v1beta, or is not supported for "
                 "generateContent. Call ListModels to see the list of available models and their supported "
                 "methods.", "NOT_FOUND"))

    # ---- generation ------------------------------------------------------------------------------------
    def _generate(self, req: _Request, conn: _Conn, api):
        now = time.time()
        try:
            data = _loads(req.body) if req.body else {}
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            model = req.gemini_model
            self._record(Call(req.path, model, None, api.name, req.headers, "bad_request", now, req.method,
                              req.query))
            return self._send(conn, req, 400, api.ctype, api.bad_json())
        try:
            gen = api.parse(data, req)
        except _BadRequest as e:
            model = data.get("model") if isinstance(data.get("model"), str) else req.gemini_model
            self._record(Call(req.path, model, None, api.name, req.headers, "bad_request", now, req.method,
                              req.query, data))
            return self._send(conn, req, e.status, api.ctype, e.body, e.headers)
        if api is _APIS["gemini"]:
            gen.extra["version"] = req.path.split("/", 2)[1]
        prompt = _last_user(gen.messages)
        call = Call(req.path, gen.model, prompt, api.name, req.headers, "ok", now, req.method, req.query, data,
                    gen.stream)

        if self.api_key is not None and api.key(req) != self.api_key:
            call.outcome = "unauthorized"
            self._record(call)
            status, body = api.unauthorized(api.key(req))
            return self._send(conn, req, status, api.ctype, body)

        rule = self.faults.match(gen.model, prompt) if self.faults is not None else None
        action = rule.action if rule is not None else None
        missing = not self.has_model(gen.model)
        if action is None and missing:
            action = "unknown_model"
            call.outcome = "unknown_model"
        elif action is not None:
            call.outcome = action
        self._record(call)

        if action in ("429", "500", "503", "529"):
            status = int(action)
            extra: tuple = ()
            if status == 429 and rule.retry_after is not None:
                extra = (("Retry-After", f"{rule.retry_after:g}"),)
                if api.name == "openai":
                    extra += (("retry-after-ms", f"{rule.retry_after * 1000:g}"),)
            return self._send(conn, req, status, api.ctype, api.fault(status, gen, rule.retry_after), extra)
        if action == "unknown_model":
            status, body = api.unknown_model(gen)
            return self._send(conn, req, status, api.ctype, body)
        if action == "reset":
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:
                try:  # linger 0: close() sends RST, the client sees ECONNRESET
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            conn.transport.abort()
            return False
        if action == "garbage":
            if gen.stream:
                return self._send_stream(conn, req, api, api.garbage_stream())
            return self._send(conn, req, 200, api.ctype, _GARBAGE)
        wait = (rule.seconds if action == "slow" else 0.0) + self.delay_s
        if wait > 0:
            return conn.defer(wait, lambda: self._answer(req, conn, api, gen, call, action, now, missing),
                              req.keep_alive)
        return self._answer(req, conn, api, gen, call, action, now, missing)

    def _answer(self, req: _Request, conn: _Conn, api, gen: _Gen, call: Call, action: str | None,
                now: float, missing: bool) -> bool:
        """A normal answer (or, for "cut", the start of one); after a "slow" fault, maybe the not-found one."""
        if missing and action != "cut":
            status, body = api.unknown_model(gen)
            return self._send(conn, req, status, api.ctype, body)
        options = {"api": api.name, "seed": gen.options.get("seed"), "temperature": gen.options.get("temperature"),
                   "max_tokens": gen.limit, "stream": gen.stream, "schema": gen.options.get("schema")}
        if not gen.messages and api.name == "ollama" and not gen.extra.get("generate"):
            text = ""   # Ollama: an empty chat just loads the model
        else:
            try:
                text = self.answer(_canonical(gen.model), gen.messages, options)
            except Exception as e:  # noqa: BLE001 - reported as the API's 500
                self.errors.append(e)
                call.outcome = "answer_error"
                return self._send(conn, req, 500, api.ctype, api.fault(500, gen, None))
        text = "" if text is None else str(text)
        truncated = False
        if gen.limit is not None and _words(text) > gen.limit:
            text = "".join(_pieces(text)[:gen.limit]).lstrip()
            truncated = True
        finish = api.finish(truncated)
        if api.name == "ollama" and not gen.messages and not gen.extra.get("generate"):
            finish = "load"
        pt = sum(_words(m["content"]) for m in gen.messages)
        ct = _words(text)
        rid = f"{next(_IDS):012d}"
        if gen.stream:
            events = api.events(gen, text, finish, pt, ct, rid, now)
            if not self.report_usage:
                events = [_without_usage(e) for e in events]
            if action == "cut":
                return self._send_stream(conn, req, api, events[:max(1, len(events) // 2)], cut=True)
            return self._send_stream(conn, req, api, events)
        body = api.response(gen, text, finish, pt, ct, rid, now)
        if not self.report_usage:
            body = _without_usage(body)
        if action == "cut":  # promise more than we send, then hang up
            conn.transport.write(_head(200, api.ctype, len(body) + 64) + body[:len(body) // 2])
            conn.transport.close()
            return False
        return self._send(conn, req, 200, api.ctype, body, self._id_headers(api, rid))

    @staticmethod
    def _id_headers(api, rid) -> tuple:
        if api.name == "openai":
            return (("x-request-id", f"req_{rid}"),)
        if api.name == "anthropic":
            return (("request-id", f"req_{rid}"),)
        return ()

    @staticmethod
    def _send_stream(conn, req, api, events: list[bytes], cut: bool = False) -> bool:
        ctype = api.stream_ctype
        if api.name == "gemini" and events and not events[0].startswith(b"data:"):
            ctype = api.ctype
        extra = (("Cache-Control", "no-cache"),) if ctype.startswith(b"text/event-stream") else ()
        out = [_head(200, ctype, None, extra, close=not req.keep_alive)]
        out += [_chunk(e) for e in events]
        if cut:
            conn.transport.write(b"".join(out))
            conn.transport.close()   # no terminating chunk: an incomplete chunked body
            return False
        out.append(b"0\r\n\r\n")
        conn.transport.write(b"".join(out))
        return True


_DEFER = None   # _dispatch result: a timer answers later


class _Conn(asyncio.Protocol):
    """One client connection: parses HTTP/1.1 requests (keep-alive, pipelining) and answers them in order."""

    def __init__(self, server: LoopbackServer):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False       # a deferred answer is pending; later requests wait in buf
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server._conns.add(self)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server._conns.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self.process()

    def process(self) -> None:
        while not self.busy and not self.closed and not self.transport.is_closing():
            req = self._next_request()
            if req is None:
                return
            try:
                keep = self.server._dispatch(req, self)
            except Exception as e:  # noqa: BLE001 - a server bug must not hang the client
                self.server.errors.append(e)
                self.transport.abort()
                return
            if keep is _DEFER:
                return
            if not keep or not req.keep_alive:
                self.close()
                return

    def defer(self, delay: float, answer: Callable[[], bool], keep_alive: bool):
        """Run `answer` after `delay` seconds; requests arriving meanwhile wait their turn."""
        self.busy = True

        def fire():
            self.timer = None
            self.busy = False
            if self.closed or self.transport.is_closing():
                return
            try:
                keep = answer()
            except Exception as e:  # noqa: BLE001
                self.server.errors.append(e)
                self.transport.abort()
                return
            if not keep or not keep_alive:
                self.close()
            else:
                self.process()

        self.timer = asyncio.get_running_loop().call_later(delay, fire)
        return _DEFER

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _next_request(self) -> _Request | None:
        buf = self.buf
        i = buf.find(b"\r\n\r\n")
        if i < 0:
            if len(buf) > 1 << 20:
                self._refuse(431, b"Request Header Fields Too Large")
            return None
        req = LoopbackServer._parse_head(bytes(buf[:i]))
        if req is None:
            self._refuse(400, b"Bad Request")
            return None
        start = i + 4
        if "chunked" in req.headers.get("transfer-encoding", "").lower():
            try:
                got = _dechunk(buf, start)
            except ValueError:
                self._refuse(400, b"Bad Request")
                return None
            if got is None:
                return None
            req.body, end = got
        else:
            try:
                n = int(req.headers.get("content-length") or 0)
            except ValueError:
                n = -1
            if n < 0 or n > _MAX_BODY:
                self._refuse(413 if n > 0 else 400, b"Bad Request")
                return None
            end = start + n
            if len(buf) < end:
                return None
            req.body = bytes(buf[start:end])
        del buf[:end]
        return req

    def _refuse(self, status: int, text: bytes) -> None:
        self.buf.clear()
        self.transport.write(_head(status, b"text/plain; charset=utf-8", len(text), close=True) + text)
        self.close()


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """A chunked body starting at buf[pos]: (body, end), None if incomplete; ValueError if malformed."""
    parts = []
    total = 0
    while True:
        j = buf.find(b"\r\n", pos)
        if j < 0:
            return None
        size = int(bytes(buf[pos:j]).split(b";", 1)[0].strip() or b"x", 16)
        pos = j + 2
        if size == 0:
            while True:   # trailers up to the empty line
                j = buf.find(b"\r\n", pos)
                if j < 0:
                    return None
                if j == pos:
                    return b"".join(parts), j + 2
                pos = j + 2
        total += size
        if total > _MAX_BODY:
            raise ValueError("body too large")
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos:pos + size]))
        pos += size + 2
