"""The fake LLM servers of tests/loopback.py: wire formats, faults, determinism, concurrency, clean shutdown."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time

import httpx
import pytest

from loopback import Call, FaultPlan, LoopbackServer, Rule, deterministic_answer

APIS = ("openai", "ollama", "anthropic", "gemini")
KEYS = {"openai": "sk-test-openai", "anthropic": "sk-ant-test", "gemini": "AIza-test", "ollama": None}


@pytest.fixture
def server():
    with LoopbackServer() as s:
        yield s


@pytest.fixture
def client():
    with httpx.Client(timeout=5.0) as c:
        yield c


def build(api: str, base: str, model: str, prompt: str, *, stream: bool = False, limit: int | None = None,
          seed: int | None = 7, system: str | None = None) -> dict:
    """The request a real client of `api` would send (arguments for httpx .request/.stream)."""
    if api == "openai":
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        body = {"model": model, "messages": msgs, "temperature": 0.7, "seed": seed, "stream": stream}
        if limit is not None:
            body["max_tokens"] = limit
        return {"method": "POST", "url": base + "/v1/chat/completions", "json": body,
                "headers": {"Authorization": f"Bearer {KEYS['openai']}"}}
    if api == "ollama":
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        opts = {"seed": seed, "temperature": 0.7, "num_ctx": 2048}
        if limit is not None:
            opts["num_predict"] = limit
        return {"method": "POST", "url": base + "/api/chat",
                "json": {"model": model, "messages": msgs, "stream": stream, "options": opts, "keep_alive": "5m"}}
    if api == "anthropic":
        body = {"model": model, "max_tokens": limit or 1024, "messages": [{"role": "user", "content": prompt}],
                "temperature": 0.7}
        if system:
            body["system"] = system
        if stream:
            body["stream"] = True
        return {"method": "POST", "url": base + "/v1/messages", "json": body,
                "headers": {"x-api-key": KEYS["anthropic"], "anthropic-version": "2023-06-01"}}
    if api == "gemini":
        gc = {"temperature": 0.7, "seed": seed}
        if limit is not None:
            gc["maxOutputTokens"] = limit
        body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}], "generationConfig": gc}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return {"method": "POST", "url": f"{base}/v1beta/models/{model}:{method}", "json": body,
                "headers": {"x-goog-api-key": KEYS["gemini"]}}
    raise ValueError(api)


def text_of(api: str, data: dict) -> str:
    if api == "openai":
        return data["choices"][0]["message"]["content"]
    if api == "ollama":
        return data["message"]["content"]
    if api == "anthropic":
        return data["content"][0]["text"]
    return data["candidates"][0]["content"]["parts"][0]["text"]


def sse_data(body: str) -> list[str]:
    return [line[len("data: "):] for line in body.splitlines() if line.startswith("data: ")]


def trigrams(text: str) -> set:
    w = text.lower().split()
    return {tuple(w[i:i + 3]) for i in range(len(w) - 2)}


def jaccard(a: str, b: str) -> float:
    x, y = trigrams(a), trigrams(b)
    return len(x & y) / len(x | y)


# --------------------------------------------------------------------------------------------- answers

def test_deterministic_answer_is_stable_and_sized():
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Why is iowait high?"}]
    a = deterministic_answer("alpha", msgs, {"seed": 1})
    assert a == deterministic_answer("alpha", msgs, {"seed": 1})
    assert a != deterministic_answer("beta", msgs, {"seed": 1})
    assert a != deterministic_answer("alpha", msgs, {"seed": 2})
    assert a != deterministic_answer("alpha", msgs[:1] + [{"role": "user", "content": "Why is load high?"}],
                                     {"seed": 1})
    # the system prompt and earlier turns do not matter, only the last user message
    assert a == deterministic_answer("alpha", [{"role": "user", "content": "Why is iowait high?"}], {"seed": 1})
    for i in range(300):
        n = len(deterministic_answer("m", [{"role": "user", "content": f"q{i}"}], {}).split())
        assert 40 <= n <= 90


def test_answers_to_different_prompts_are_distinct():
    prompts = [f"Explain how {t} affects {m} on a busy host (variant {i})"
               for i, (t, m) in enumerate(itertools.product(["swap", "GC", "Splunk indexing", "EGO slots", "NFS"],
                                                            ["latency", "throughput"]))]
    prompts += [f"Question number {i}" for i in range(40)]
    assert len(prompts) == 50
    answers = [deterministic_answer("alpha", [{"role": "user", "content": p}], {"seed": 7}) for p in prompts]
    answers += [deterministic_answer(m, [{"role": "user", "content": prompts[0]}], {"seed": 7})
                for m in ("beta", "gamma")]
    worst = max(jaccard(a, b) for a, b in itertools.combinations(answers, 2))
    assert worst < 0.5, worst


# --------------------------------------------------------------------------------------------- OpenAI

def test_openai_models_and_chat(server, client):
    r = client.get(server.url + "/v1/models", headers={"Authorization": "Bearer sk-x"})
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == ["alpha", "beta", "gamma"]
    assert set(data["data"][0]) >= {"id", "object", "created", "owned_by"} and data["data"][0]["object"] == "model"

    r = client.request(**build("openai", server.url, "beta", "How do I read vmstat?", system="You are terse."))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    d = r.json()
    assert d["object"] == "chat.completion" and d["model"] == "beta" and d["id"].startswith("chatcmpl-")
    assert isinstance(d["created"], int)
    choice = d["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    expected = deterministic_answer("beta", [{"role": "user", "content": "How do I read vmstat?"}], {"seed": 7})
    assert choice["message"]["content"] == expected
    u = d["usage"]
    assert u["completion_tokens"] == len(expected.split())
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and u["prompt_tokens"] > 0

    calls = server.calls_for("/v1/chat")
    assert len(calls) == 1
    c = calls[0]
    assert isinstance(c, Call)
    assert (c.api, c.model, c.prompt, c.outcome) == ("openai", "beta", "How do I read vmstat?", "ok")
    assert c.headers["authorization"] == "Bearer sk-test-openai"
    assert c.body["seed"] == 7 and c.stream is False
    assert len(server.calls) == 2 and server.calls[0].path == "/v1/models"


def test_openai_max_tokens_truncates(server, client):
    req = build("openai", server.url, "alpha", "truncate me", limit=5)
    d = client.request(**req).json()
    assert d["choices"][0]["finish_reason"] == "length"
    assert len(d["choices"][0]["message"]["content"].split()) == 5
    assert d["usage"]["completion_tokens"] == 5
    req["json"].pop("max_tokens")
    req["json"]["max_completion_tokens"] = 3
    d = client.request(**req).json()
    assert d["choices"][0]["finish_reason"] == "length" and len(d["choices"][0]["message"]["content"].split()) == 3
    req["json"]["max_completion_tokens"] = 1000
    assert client.request(**req).json()["choices"][0]["finish_reason"] == "stop"


def test_openai_streaming_sse(server, client):
    req = build("openai", server.url, "alpha", "stream please", stream=True)
    req["json"]["stream_options"] = {"include_usage": True}
    with client.stream(**req) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    data = sse_data(body)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(x) for x in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    full = client.request(**build("openai", server.url, "alpha", "stream please")).json()
    assert text == full["choices"][0]["message"]["content"]
    finals = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finals[-1] == "stop" and set(finals[:-1]) == {None}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == len(text.split())
    # without include_usage there is no usage chunk
    body = client.request(**build("openai", server.url, "alpha", "stream please", stream=True, limit=4)).text
    chunks = [json.loads(x) for x in sse_data(body)[:-1]]
    assert all(c["choices"] for c in chunks) and chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert server.calls_for("/v1/chat")[0].stream is True


def test_openai_unknown_and_removed_model(server, client):
    r = client.request(**build("openai", server.url, "nope", "hi"))
    assert r.status_code == 404
    assert r.json() == {"error": {"message": "The model `nope` does not exist", "type": "invalid_request_error",
                                  "param": "model", "code": "model_not_found"}}
    assert client.request(**build("openai", server.url, "gamma", "hi")).status_code == 200
    server.remove_model("gamma")
    r = client.request(**build("openai", server.url, "gamma", "hi"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert "gamma" not in [m["id"] for m in client.get(server.url + "/v1/models").json()["data"]]
    assert [c.outcome for c in server.calls_for("/v1/chat")] == ["unknown_model", "ok", "unknown_model"]


def test_openai_bad_requests(server, client):
    r = client.post(server.url + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = client.post(server.url + "/v1/chat/completions", json={"model": "alpha"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = client.post(server.url + "/v1/nothing", json={})
    assert r.status_code == 404


# --------------------------------------------------------------------------------------------- Ollama

def test_ollama_tags_and_chat(server, client):
    tags = client.get(server.url + "/api/tags").json()
    assert [m["name"] for m in tags["models"]] == ["alpha:latest", "beta:latest", "gamma:latest"]
    m = tags["models"][0]
    assert set(m) >= {"name", "model", "modified_at", "size", "digest", "details"}
    assert m["details"]["format"] == "gguf"

    r = client.request(**build("ollama", server.url, "alpha", "What does swappiness do?"))
    assert r.status_code == 200
    d = r.json()
    assert d["model"] == "alpha" and d["done"] is True and d["done_reason"] == "stop"
    assert d["message"]["role"] == "assistant"
    assert d["message"]["content"] == deterministic_answer(
        "alpha", [{"role": "user", "content": "What does swappiness do?"}], {"seed": 7})
    for k in ("created_at", "total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
              "eval_count", "eval_duration"):
        assert k in d
    assert d["eval_count"] == len(d["message"]["content"].split())
    # the ":latest" tag names the same model and gives the same answer
    d2 = client.request(**build("ollama", server.url, "alpha:latest", "What does swappiness do?")).json()
    assert d2["message"]["content"] == d["message"]["content"] and d2["model"] == "alpha:latest"
    c = server.calls_for("/api/chat")[0]
    assert c.api == "ollama" and c.body["options"]["num_ctx"] == 2048 and c.body["keep_alive"] == "5m"


def test_ollama_streams_by_default_ndjson(server, client):
    req = build("ollama", server.url, "beta", "stream by default")
    del req["json"]["stream"]   # Ollama streams when "stream" is absent
    with client.stream(**req) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert len(lines) > 2
    assert all(x["done"] is False for x in lines[:-1]) and lines[-1]["done"] is True
    assert lines[-1]["done_reason"] == "stop" and "eval_count" in lines[-1]
    text = "".join(x["message"]["content"] for x in lines)
    assert text == client.request(**build("ollama", server.url, "beta", "stream by default")).json()["message"]["content"]
    # a client that forgets stream=false cannot parse the body as one JSON document
    with pytest.raises(json.JSONDecodeError):
        client.request(**req).json()


def test_ollama_num_predict_unknown_model_and_generate(server, client):
    d = client.request(**build("ollama", server.url, "alpha", "short", limit=6)).json()
    assert d["done_reason"] == "length" and len(d["message"]["content"].split()) == 6 and d["eval_count"] == 6
    lines = [json.loads(x) for x in client.request(**build("ollama", server.url, "alpha", "short", limit=6,
                                                             stream=True)).text.splitlines()]
    assert lines[-1]["done_reason"] == "length"
    r = client.request(**build("ollama", server.url, "llama9", "hi"))
    assert r.status_code == 404 and r.json() == {"error": 'model "llama9" not found, try pulling it first'}
    g = client.post(server.url + "/api/generate", json={"model": "beta", "prompt": "hello", "stream": False}).json()
    assert g["done"] is True and g["response"] == deterministic_answer("beta", [{"role": "user", "content": "hello"}],
                                                                      {"seed": None})


# --------------------------------------------------------------------------------------------- Anthropic

def test_anthropic_messages(server, client):
    r = client.request(**build("anthropic", server.url, "gamma", "Explain Splunk buckets", system="Be kind."))
    assert r.status_code == 200
    d = r.json()
    assert d["type"] == "message" and d["role"] == "assistant" and d["model"] == "gamma"
    assert d["id"].startswith("msg_") and d["stop_reason"] == "end_turn" and d["stop_sequence"] is None
    assert d["content"][0]["type"] == "text"
    assert d["content"][0]["text"] == deterministic_answer(
        "gamma", [{"role": "user", "content": "Explain Splunk buckets"}], {"seed": None})
    assert d["usage"]["output_tokens"] == len(d["content"][0]["text"].split()) and d["usage"]["input_tokens"] > 0
    c = server.calls_for("/v1/messages")[0]
    assert c.headers["x-api-key"] == "sk-ant-test" and c.headers["anthropic-version"] == "2023-06-01"
    assert c.api == "anthropic" and c.prompt == "Explain Splunk buckets"

    d = client.request(**build("anthropic", server.url, "gamma", "Explain Splunk buckets", limit=4)).json()
    assert d["stop_reason"] == "max_tokens" and len(d["content"][0]["text"].split()) == 4

    r = client.request(**build("anthropic", server.url, "claude-x", "hi"))
    assert r.status_code == 404
    assert r.json()["type"] == "error" and r.json()["error"] == {"type": "not_found_error", "message": "model: claude-x"}

    req = build("anthropic", server.url, "gamma", "hi")
    del req["headers"]["anthropic-version"]
    r = client.request(**req)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    req = build("anthropic", server.url, "gamma", "hi")
    del req["json"]["max_tokens"]
    assert client.request(**req).status_code == 400


def test_anthropic_streaming(server, client):
    body = client.request(**build("anthropic", server.url, "alpha", "stream it", stream=True, limit=10)).text
    events = [line[7:] for line in body.splitlines() if line.startswith("event: ")]
    data = [json.loads(x) for x in sse_data(body)]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert [d["type"] for d in data] == events
    text = "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta")
    assert len(text.split()) == 10
    delta = next(d for d in data if d["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "max_tokens" and delta["usage"]["output_tokens"] == 10


# --------------------------------------------------------------------------------------------- Gemini

def test_gemini_generate_content(server, client):
    r = client.request(**build("gemini", server.url, "alpha", "What is a JVM safepoint?", system="Short."))
    assert r.status_code == 200
    d = r.json()
    cand = d["candidates"][0]
    assert cand["content"]["role"] == "model" and cand["finishReason"] == "STOP" and cand["index"] == 0
    assert cand["content"]["parts"][0]["text"] == deterministic_answer(
        "alpha", [{"role": "user", "content": "What is a JVM safepoint?"}], {"seed": 7})
    u = d["usageMetadata"]
    assert u["totalTokenCount"] == u["promptTokenCount"] + u["candidatesTokenCount"]
    assert d["modelVersion"] == "alpha"
    c = server.calls_for("/v1beta/")[0]
    assert (c.api, c.model, c.prompt) == ("gemini", "alpha", "What is a JVM safepoint?")
    assert c.headers["x-goog-api-key"] == "AIza-test"

    # the key as a query parameter; maxOutputTokens truncates
    req = build("gemini", server.url, "alpha", "What is a JVM safepoint?", limit=3)
    req.pop("headers")
    req["params"] = {"key": "AIza-query"}
    d = client.request(**req).json()
    assert d["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert len(d["candidates"][0]["content"]["parts"][0]["text"].split()) == 3
    assert server.calls_for("/v1beta/")[-1].query == {"key": "AIza-query"}

    r = client.request(**build("gemini", server.url, "gemini-9", "hi"))
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == 404 and err["status"] == "NOT_FOUND" and err["message"].startswith("models/gemini-9 is not found")

    models = client.get(server.url + "/v1beta/models", headers={"x-goog-api-key": "k"}).json()["models"]
    assert [m["name"] for m in models] == ["models/alpha", "models/beta", "models/gamma"]


def test_gemini_streaming(server, client):
    body = client.request(**build("gemini", server.url, "beta", "stream", stream=True)).text
    chunks = [json.loads(x) for x in sse_data(body)]
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert text == client.request(**build("gemini", server.url, "beta", "stream")).json()[
        "candidates"][0]["content"]["parts"][0]["text"]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


# --------------------------------------------------------------------------------------------- faults

@pytest.mark.parametrize("api", APIS)
def test_fault_429_with_retry_after_then_ok(api, client):
    plan = FaultPlan([Rule("429", times=2, retry_after=0.25)])
    with LoopbackServer(faults=plan) as s:
        req = build(api, s.url, "alpha", "rate limited")
        for _ in range(2):
            r = client.request(**req)
            assert r.status_code == 429 and r.headers["retry-after"] == "0.25"
            body = r.json()
            if api == "openai":
                assert body["error"]["code"] == "rate_limit_exceeded"
            elif api == "anthropic":
                assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
            elif api == "gemini":
                assert body["error"]["status"] == "RESOURCE_EXHAUSTED" and body["error"]["code"] == 429
            else:
                assert isinstance(body["error"], str)
        assert client.request(**req).status_code == 200
        assert [c.outcome for c in s.calls] == ["429", "429", "ok"]
        assert plan.fired == [2]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("status", ["500", "503"])
def test_fault_5xx_bodies(api, status, client):
    with LoopbackServer(faults=FaultPlan([Rule(status)])) as s:
        r = client.request(**build(api, s.url, "alpha", "boom"))
        assert r.status_code == int(status)
        body = r.json()
        assert "error" in body
        if api == "anthropic":
            assert body["error"]["type"] == ("api_error" if status == "500" else "overloaded_error")
        if api == "gemini":
            assert body["error"]["status"] == ("INTERNAL" if status == "500" else "UNAVAILABLE")
        assert "retry-after" not in r.headers
        assert client.request(**build(api, s.url, "alpha", "boom")).status_code == 200


def test_fault_429_without_retry_after(client):
    with LoopbackServer(faults=FaultPlan([Rule("429")])) as s:
        r = client.request(**build("openai", s.url, "alpha", "x"))
        assert r.status_code == 429 and "retry-after" not in r.headers


@pytest.mark.parametrize("api", APIS)
def test_fault_garbage(api, client):
    with LoopbackServer(faults=FaultPlan([Rule("garbage", times=2)])) as s:
        r = client.request(**build(api, s.url, "alpha", "junk"))
        assert r.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            r.json()
        r = client.request(**build(api, s.url, "alpha", "junk", stream=True))
        assert r.status_code == 200
        lines = sse_data(r.text) if api != "ollama" else r.text.splitlines()
        with pytest.raises(json.JSONDecodeError):
            for line in lines:
                json.loads(line)


@pytest.mark.parametrize("api", APIS)
def test_fault_cut(api, client):
    with LoopbackServer(faults=FaultPlan([Rule("cut", times=2)])) as s:
        with pytest.raises(httpx.RemoteProtocolError):
            client.request(**build(api, s.url, "alpha", "cut me"))
        got = []
        with pytest.raises(httpx.RemoteProtocolError):
            with client.stream(**build(api, s.url, "alpha", "cut me", stream=True)) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    got.append(line)
        assert got, "part of the stream arrives before the cut"
        assert client.request(**build(api, s.url, "alpha", "cut me")).status_code == 200
        assert [c.outcome for c in s.calls] == ["cut", "cut", "ok"]


@pytest.mark.parametrize("api", APIS)
def test_fault_reset(api, client):
    with LoopbackServer(faults=FaultPlan([Rule("reset")])) as s:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            client.request(**build(api, s.url, "alpha", "reset me"))
        assert client.request(**build(api, s.url, "alpha", "reset me")).status_code == 200


def test_fault_slow_gives_read_timeout(client):
    with LoopbackServer(faults=FaultPlan([Rule("slow", seconds=1.0)])) as s:
        t0 = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.request(**build("openai", s.url, "alpha", "slow"), timeout=0.2)
        assert time.monotonic() - t0 < 0.9
        assert s.calls[0].outcome == "slow"
    with LoopbackServer(faults=FaultPlan([Rule("slow", seconds=0.2)])) as s:
        t0 = time.monotonic()
        r = client.request(**build("ollama", s.url, "alpha", "slow"))
        assert r.status_code == 200 and time.monotonic() - t0 >= 0.2


@pytest.mark.parametrize("api", APIS)
def test_fault_unknown_model(api, client):
    with LoopbackServer(faults=FaultPlan([Rule("unknown_model", model="beta")])) as s:
        assert client.request(**build(api, s.url, "alpha", "x")).status_code == 200
        r = client.request(**build(api, s.url, "beta", "x"))
        assert r.status_code == 404
        direct = client.request(**build(api, s.url, "zeta", "x"))
        assert direct.status_code == 404
        strip = (lambda b: b["error"]) if api == "anthropic" else (lambda b: b)
        assert strip(r.json()) == strip(json.loads(direct.text.replace("zeta", "beta")))
        assert client.request(**build(api, s.url, "beta", "x")).status_code == 200


def test_fault_matching_and_order(client):
    plan = FaultPlan([Rule("500", times=None, model="beta", prompt_contains="disk"),
                      Rule("503", times=1, prompt_contains="disk"),
                      Rule("429", times=None, model="gamma")])
    with LoopbackServer(faults=plan) as s:
        def status(model, prompt):
            return client.request(**build("ollama", s.url, model, prompt)).status_code
        assert status("beta", "a disk question") == 500
        assert status("beta", "a disk question") == 500          # times=None: always
        assert status("alpha", "another disk question") == 503
        assert status("alpha", "another disk question") == 200   # rule 2 used up
        assert status("gamma", "anything") == 429
        assert status("gamma:latest", "anything") == 429        # model match ignores the :latest tag
        assert status("alpha", "anything") == 200
        # listings are never faulted
        assert client.get(s.url + "/api/tags").status_code == 200
        assert client.get(s.url + "/v1/models").status_code == 200
    with pytest.raises(ValueError):
        Rule("teapot")


def test_delay_and_custom_answer(client):
    seen = []

    def answer(model, messages, options):
        seen.append((model, messages, options))
        return "custom answer  with   spacing\nand a newline"

    with LoopbackServer(models=("m1",), answer=answer, delay_s=0.1) as s:
        t0 = time.monotonic()
        d = client.request(**build("gemini", s.url, "m1", "p", system="sys")).json()
        assert time.monotonic() - t0 >= 0.1
        assert d["candidates"][0]["content"]["parts"][0]["text"] == "custom answer  with   spacing\nand a newline"
        body = client.request(**build("openai", s.url, "m1", "p", stream=True)).text
        text = "".join(json.loads(x)["choices"][0]["delta"].get("content", "") for x in sse_data(body)[:-1])
        assert text == "custom answer  with   spacing\nand a newline"
    model, messages, options = seen[0]
    assert model == "m1"
    assert messages == [{"role": "system", "content": "sys"}, {"role": "user", "content": "p"}]
    assert options["seed"] == 7 and options["temperature"] == 0.7 and options["api"] == "gemini"


def test_api_key_enforced_when_configured(client):
    with LoopbackServer(api_key="right") as s:
        req = build("openai", s.url, "alpha", "x")
        assert client.request(**req).status_code == 401
        req["headers"]["Authorization"] = "Bearer right"
        assert client.request(**req).status_code == 200
        req = build("anthropic", s.url, "alpha", "x")
        r = client.request(**req)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        req = build("gemini", s.url, "alpha", "x")
        assert client.request(**req).status_code == 400
        req["headers"]["x-goog-api-key"] = "right"
        assert client.request(**req).status_code == 200
        assert [c.outcome for c in s.calls] == ["unauthorized", "ok", "unauthorized", "unauthorized", "ok"]


# --------------------------------------------------------------------------------------------- load, lifecycle

def test_concurrent_async_clients():
    async def run(url):
        async with httpx.AsyncClient(timeout=10.0) as c:
            queue = list(range(200))
            results = []

            async def worker():
                while queue:
                    i = queue.pop()
                    api = APIS[i % 4]
                    r = await c.request(**build(api, url, "alpha", f"prompt {i}", stream=(i % 5 == 0)))
                    results.append(r.status_code)

            await asyncio.gather(*(worker() for _ in range(20)))
            return results

    with LoopbackServer() as s:
        results = asyncio.run(run(s.url))
        assert results == [200] * 200
        assert len(s.calls) == 200 and {c.outcome for c in s.calls} == {"ok"}


def test_stop_with_open_connections_and_inflight_requests():
    before = threading.active_count()
    s = LoopbackServer(faults=FaultPlan([Rule("slow", seconds=30)])).start()
    c = httpx.Client(timeout=0.3)
    try:
        with pytest.raises(httpx.ReadTimeout):
            c.request(**build("openai", s.url, "alpha", "hang"))   # the server is still sleeping on it
        assert c.get(s.url + "/api/tags").status_code == 200        # an idle keep-alive connection too
        t0 = time.monotonic()
        s.stop()
        assert time.monotonic() - t0 < 2
    finally:
        c.close()
    assert threading.active_count() == before
    s.stop()   # idempotent
    with pytest.raises(httpx.ConnectError), httpx.Client() as c2:
        c2.get(s.url + "/api/tags")


def test_many_start_stop_cycles():
    urls = set()
    for _ in range(20):
        with LoopbackServer() as s, httpx.Client() as c:
            urls.add(s.url)
            assert c.get(s.url + "/api/tags").status_code == 200
    assert all(u.startswith("http://127.0.0.1:") and not u.endswith("/") for u in urls)


def test_model_lookups_and_odd_requests(server, client):
    anth = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    d = client.get(server.url + "/v1/models", headers=anth).json()
    assert [m["id"] for m in d["data"]] == ["alpha", "beta", "gamma"] and d["has_more"] is False
    assert client.get(server.url + "/v1/models/beta", headers=anth).json()["type"] == "model"
    r = client.get(server.url + "/v1/models/nope", headers=anth)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    assert client.get(server.url + "/v1/models/beta").json()["object"] == "model"
    assert client.get(server.url + "/v1beta/models/beta").json()["name"] == "models/beta"
    assert client.get(server.url + "/v1beta/models/nope").status_code == 404
    assert client.get(server.url + "/").text == "Ollama is running"
    r = client.head(server.url + "/api/tags")
    assert r.status_code == 200 and r.content == b""
    # a chunked request body, then the keep-alive connection still works
    body = json.dumps({"model": "alpha", "messages": [{"role": "user", "content": "chunked"}], "stream": False})
    r = client.post(server.url + "/api/chat", content=iter([body[:10].encode(), body[10:].encode()]))
    assert r.status_code == 200 and r.json()["done"] is True
    # Ollama: a chat without messages just loads the model
    d = client.post(server.url + "/api/chat", json={"model": "alpha", "stream": False}).json()
    assert d["done_reason"] == "load" and d["message"]["content"] == ""
    assert client.get(server.url + "/api/tags").status_code == 200


def test_slow_fault_on_unknown_model_still_answers_not_found(client):
    with LoopbackServer(faults=FaultPlan([Rule("slow", seconds=0.05)])) as s:
        r = client.request(**build("openai", s.url, "ghost", "x"))
        assert r.status_code == 404 and s.calls[0].outcome == "slow"
