"""Structured answers (issue 16 item 1): each backend asks for the answer schema through its own
structured-output mechanism, in its real wire format, and hands back the JSON; a grounded run rejects
an answer that is not JSON or breaks the schema, with the reason, and the export keeps the object.

The servers are loopback servers (tests/loopback.py) that check where each wire format carries the
schema and refuse what the real API refuses (Gemini: fields outside its Schema object)."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import httpx
import pytest

from language.__main__ import main
from language.backends import BACKENDS, Request
from language.backends.base import decoding_schema
from language.backends.gemini import response_schema
from language.backends.openai import response_format
from language.settings import BackendSpec
from language.verify import ANSWER_SCHEMA, ANSWER_SCHEMA_NAME, _check, parse_answer

from conftest import FAST_RETRIES, language_config
from loopback import LoopbackServer

ANSWER = {"verdict": "memory_leak", "anomalous_metrics": ["memory_usage"],
          "evidence": [{"metric": "memory_usage", "value": 93.0, "time": "10:05"}], "onset": "09:40",
          "severity": "high", "check_first": "the heap of the biggest process",
          "explanation": "Memory climbs steadily from 61 to 93 percent: a memory leak."}


def _spec(kind: str) -> BackendSpec:
    return BackendSpec(name=kind, type=kind, enabled=True, models=("alpha",), endpoints=("http://unused",))


def _request(schema: dict | None) -> Request:
    return Request("alpha", "You are terse.", "Is this host healthy?", 0.2, 400, 7, schema=schema,
                   schema_name=ANSWER_SCHEMA_NAME)


def _ask(kind: str, server: LoopbackServer, schema: dict | None):
    backend = BACKENDS[kind](_spec(kind), "key")

    async def go():
        async with httpx.AsyncClient(timeout=10) as client:
            return await backend.generate(client, server.url, _request(schema))
    return asyncio.run(go())


def _schema_answer(model, messages, options):
    """The answer a constrained decoder gives: the JSON when the schema arrived, else prose."""
    return json.dumps(ANSWER) if options["schema"] is not None else "Memory grows: probably a leak."


# where each wire format carries the schema, as the backend must send it
SENT = {
    "ollama": lambda body: body["format"],
    "openai": lambda body: body["response_format"]["json_schema"]["schema"],
    "embedded": lambda body: body["response_format"]["json_schema"]["schema"],
    "anthropic": lambda body: body["tools"][0]["input_schema"],
    "gemini": lambda body: body["generationConfig"]["responseSchema"],
}
EXPECTED = {"gemini": response_schema(decoding_schema(ANSWER_SCHEMA)), "ollama": decoding_schema(ANSWER_SCHEMA),
            "openai": decoding_schema(ANSWER_SCHEMA), "embedded": decoding_schema(ANSWER_SCHEMA)}


@pytest.mark.parametrize("kind", sorted(SENT))
def test_each_backend_sends_the_schema_in_its_wire_format_and_returns_the_json(kind):
    with LoopbackServer(models=("alpha",), answer=_schema_answer) as server:
        reply = _ask(kind, server, ANSWER_SCHEMA)
        body = server.calls_for()[-1].body
    assert SENT[kind](body) == EXPECTED.get(kind, ANSWER_SCHEMA)
    assert SENT[kind](body)["properties"]["verdict"]["enum"] == ANSWER_SCHEMA["properties"]["verdict"]["enum"]
    answer, problem = parse_answer(reply.text)
    assert problem is None and answer == ANSWER
    assert reply.finish_reason == "stop"


@pytest.mark.parametrize("kind", sorted(SENT))
def test_a_free_text_request_sends_no_schema(kind):
    with LoopbackServer(models=("alpha",), answer=_schema_answer) as server:
        reply = _ask(kind, server, None)
        body = server.calls_for()[-1].body
    assert not {"format", "response_format", "tools", "tool_choice"} & set(body)
    assert "responseSchema" not in body.get("generationConfig", {})
    assert reply.text == "Memory grows: probably a leak."


def test_the_wire_details_of_each_mechanism():
    with LoopbackServer(models=("alpha",), answer=_schema_answer) as server:
        for kind in ("openai", "anthropic", "gemini"):
            _ask(kind, server, ANSWER_SCHEMA)
        openai, anthropic, gemini = (c.body for c in server.calls_for())
    assert openai["response_format"]["type"] == "json_schema"
    assert openai["response_format"]["json_schema"]["name"] == ANSWER_SCHEMA_NAME
    assert anthropic["tool_choice"] == {"type": "tool", "name": ANSWER_SCHEMA_NAME}
    assert anthropic["tools"][0]["name"] == ANSWER_SCHEMA_NAME
    assert gemini["generationConfig"]["responseMimeType"] == "application/json"


def test_gemini_gets_its_schema_subset():
    converted = response_schema(decoding_schema(ANSWER_SCHEMA))
    text = json.dumps(converted)
    assert "additionalProperties" not in text and "$schema" not in text and '"null"' not in text
    assert converted["type"] == "OBJECT" and converted["propertyOrdering"][0] == "verdict"
    assert converted["properties"]["onset"] == {"type": "STRING", "nullable": True, "maxLength": 40}
    alternatives = converted["properties"]["evidence"]["items"]["anyOf"]
    assert [a["required"] for a in alternatives] == [["metric", "value"], ["metric", "values"]]
    assert all(a["type"] == "OBJECT" and "additionalProperties" not in a for a in alternatives)
    # the loopback refuses what Gemini refuses: the schema as is
    with LoopbackServer(models=("alpha",)) as server:
        backend = BACKENDS["gemini"](_spec("gemini"), "key")
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "generationConfig": {"responseMimeType": "application/json", "responseSchema": ANSWER_SCHEMA}}
        response = httpx.post(f"{server.url}/v1beta/models/alpha:generateContent", json=body,
                              headers={"x-goog-api-key": "key"})
    assert backend and response.status_code == 400 and "Unknown name" in response.text


def test_a_decoder_gets_the_key_rule_as_typed_alternatives():
    """llama.cpp's grammar converter (the embedded server, Ollama) reads an anyOf as the whole node: the
    evidence object's "value or values" rule, as written, would make each evidence item any value at all."""
    evidence = ANSWER_SCHEMA["properties"]["evidence"]["items"]
    decoded = decoding_schema(ANSWER_SCHEMA)["properties"]["evidence"]["items"]
    assert set(decoded) == {"anyOf"}
    for alternative, key in zip(decoded["anyOf"], ("value", "values")):
        assert alternative == {**{k: v for k, v in evidence.items() if k != "anyOf"}, "required": ["metric", key]}
    typed = {"anyOf": [{"type": "string"}, {"type": "number"}]}
    assert decoding_schema(typed) == typed
    for answer in ({"metric": "cpu_usage", "value": 1.0}, {"metric": "cpu_usage"}):  # the same answers pass
        ok = any(_check(answer, a, "") is None for a in decoded["anyOf"])
        assert ok == (_check(answer, evidence, "") is None)


def test_openai_strict_only_for_a_schema_strict_mode_accepts():
    assert response_format(ANSWER_SCHEMA, "a")["json_schema"]["strict"] is False  # evidence.value is optional
    strict = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "array", "items": {
        "type": "object", "properties": {"c": {"type": "number"}}, "required": ["c"], "additionalProperties": False}}},
        "required": ["a", "b"], "additionalProperties": False}
    assert response_format(strict, "a")["json_schema"]["strict"] is True


def test_anthropic_without_a_tool_use_block_gives_its_text():
    """A model that ignores the forced tool answers in a text block: that text comes back (and a grounded
    run then rejects it as not JSON)."""
    with LoopbackServer(models=("alpha",), answer=lambda m, msgs, o: "I think it is a leak.") as server:
        reply = _ask("anthropic", server, ANSWER_SCHEMA)
    assert reply.text == "I think it is a leak."


def test_the_static_backend_returns_its_text_as_is():
    backend = BACKENDS["static"](BackendSpec(name="s", type="static", enabled=True, models=("static",)))
    reply = asyncio.run(backend.generate(None, "static:", _request(ANSWER_SCHEMA)))
    assert parse_answer(reply.text)[1].startswith("structured: not JSON")


# ------------------------------------------------------------------------------ a grounded run
@pytest.fixture
def config_dir(tmp_path):
    return language_config(tmp_path, requests={"timeout_s": 5, **FAST_RETRIES})


def _normal_samples(path, n=12):
    samples = [{"id": f"s-{i}", "timestamp": f"2026-01-05T{i:02d}:00:00Z", "status": "normal", "anomaly_type": None,
                "metrics": {"cpu_usage": 20.5 + i, "memory_usage": 40.0, "load_average": 1.25,
                            "spectrum_active_jobs": 1}} for i in range(n)]
    path.write_text(json.dumps({"metadata": {}, "training_samples": samples}))
    return path


def _healthy(i: int) -> dict:
    return {"verdict": "healthy", "anomalous_metrics": [], "evidence": [], "onset": None, "severity": "none",
            "check_first": "nothing beyond the routine checks",
            "explanation": f"Every reading sits in its usual range for host number {i}, so the host is healthy and "
                           f"nothing needs attention beyond the routine checks on the dashboard (case {i})."}


def test_a_grounded_run_rejects_broken_json_with_its_reason_and_exports_the_object(tmp_path, config_dir):
    """Answers by sample: valid JSON, not JSON, JSON that breaks the schema, JSON cut at the token limit."""
    metrics = _normal_samples(tmp_path / "metrics.json")

    def answer(model, messages, options):
        if options["schema"] is None:  # the request lacks its schema: prose, which the run must reject
            return "The host is healthy."
        sample = next(s for s in json.loads(metrics.read_text())["training_samples"]
                      if s["timestamp"] in messages[-1]["content"])
        i = int(sample["id"][2:])
        if i % 4 == 1:
            return "The host is healthy and nothing needs attention today."
        if i % 4 == 2:
            return json.dumps({**_healthy(i), "verdict": "fine"})
        if i % 4 == 3:
            return json.dumps(_healthy(i)) + " " + "pad " * 600  # cut at max_tokens (words, in the loopback)
        return json.dumps(_healthy(i))

    out = tmp_path / "out"
    with LoopbackServer(models=("alpha",), answer=answer) as server:
        assert main(["generate", "--config-dir", str(config_dir), "--output-dir", str(out), "--quiet",
                     "--endpoint", f"ollama={server.url}", "--models", "alpha", "--types", "metrics_explanation",
                     "--count", "12", "--from-metrics", str(metrics), "--chat-structured"]) == 0
        assert all(c.body["format"] == decoding_schema(ANSWER_SCHEMA) for c in server.calls_for("/api/chat"))
    db = sqlite3.connect(out / "language_staging" / "ledger.sqlite")
    rows = db.execute("SELECT source_sample_id, status, reason, response, structured FROM results").fetchall()
    db.close()
    by_kind = {k: [r for r in rows if int(r[0][2:]) % 4 == k] for k in range(4)}
    assert len(rows) == 12 and all(len(v) == 3 for v in by_kind.values())
    assert all(r[1] == "accepted" and r[2] is None and json.loads(r[4]) == _healthy(int(r[0][2:]))
               and r[3] == _healthy(int(r[0][2:]))["explanation"] for r in by_kind[0])
    assert all(r[1] == "rejected" and r[2].startswith("structured: not JSON") and r[4] is None for r in by_kind[1])
    assert all(r[1] == "rejected" and r[2].startswith("structured: schema: verdict: 'fine' is not one of")
               for r in by_kind[2])
    assert all(r[1] == "rejected" and r[2] == "truncated at the token limit" for r in by_kind[3])

    data = json.loads((out / "language_dataset.json").read_text())
    assert len(data["samples"]) == 3
    for s in data["samples"]:
        assert s["structured"] == _healthy(int(s["source_sample_id"][2:]))
        assert s["response"] == s["structured"]["explanation"]
    chat = [json.loads(line) for line in (out / "language_dataset.chat.jsonl").read_text().splitlines()]
    assert [json.loads(c["messages"][-1]["content"]) for c in chat] == [s["structured"] for s in data["samples"]]

    assert main(["export", "--config-dir", str(config_dir), "--output-dir", str(out), "--quiet"]) == 0
    chat = [json.loads(line) for line in (out / "language_dataset.chat.jsonl").read_text().splitlines()]
    assert [c["messages"][-1]["content"] for c in chat] == [s["response"] for s in data["samples"]]


def test_the_loopback_streams_a_forced_tool_as_input_json_deltas():
    """Anthropic streams a tool_use block's input as input_json_delta pieces of partial JSON."""
    body = {"model": "alpha", "max_tokens": 400, "stream": True, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": ANSWER_SCHEMA_NAME, "input_schema": ANSWER_SCHEMA}],
            "tool_choice": {"type": "tool", "name": ANSWER_SCHEMA_NAME}}
    with LoopbackServer(models=("alpha",), answer=_schema_answer) as server:
        response = httpx.post(f"{server.url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    start = next(e for e in events if e["type"] == "content_block_start")["content_block"]
    pieces = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
    stop = next(e for e in events if e["type"] == "message_delta")["delta"]["stop_reason"]
    assert start["type"] == "tool_use" and start["name"] == ANSWER_SCHEMA_NAME and start["input"] == {}
    assert len(pieces) > 1 and json.loads("".join(pieces)) == ANSWER and stop == "tool_use"
