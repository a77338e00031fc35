"""The Anthropic backend streams (server-sent events: message_start, content_block_start/delta/stop with
text_delta or a forced tool's input_json_delta, message_delta, message_stop), against the loopback
server's Anthropic wire format: the same answers, structured answers and token counts as the whole
message (--no-stream); a cut or garbled stream and an `error` event are retryable failures; the events
of a longer message (several blocks, pings, cumulative usage) are put together in index order.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3

import httpx
import pytest

from language.__main__ import main
from language.backends import BACKENDS, BackendError, Request
from language.backends.anthropic import StreamedMessage
from language.settings import BackendSpec
from language.verify import ANSWER_SCHEMA, ANSWER_SCHEMA_NAME

from conftest import FAST_RETRIES, language_config
from loopback import FaultPlan, LoopbackServer, Rule

ANSWER = {"verdict": "memory_leak", "anomalous_metrics": ["memory_usage"],
          "evidence": [{"metric": "memory_usage", "value": 93.0, "time": "10:05"}], "onset": "09:40",
          "severity": "high", "check_first": "the heap of the biggest process",
          "explanation": "Memory climbs steadily from 61 to 93 percent: a memory leak."}


def _backend(stream: bool):
    spec = BackendSpec(name="anthropic", type="anthropic", enabled=True, models=("alpha",),
                       endpoints=("http://unused",), stream=stream)
    return BACKENDS["anthropic"](spec, "sk-ant-test")


def _ask(server: LoopbackServer, *, stream: bool, schema: dict | None = None, max_tokens: int = 400):
    request = Request("alpha", "You are terse.", "Is this host healthy? Explain the memory graph.", 0.2, max_tokens,
                      7, schema=schema, schema_name=ANSWER_SCHEMA_NAME)

    async def go():
        async with httpx.AsyncClient(timeout=10) as client:
            return await _backend(stream).generate(client, server.url, request)
    return asyncio.run(go())


def test_a_streamed_answer_is_the_whole_messages_answer_with_its_token_counts():
    with LoopbackServer(models=("alpha",)) as server:
        streamed, whole = _ask(server, stream=True), _ask(server, stream=False)
        calls = server.calls_for("/v1/messages")
    assert [c.body.get("stream") for c in calls] == [True, None]
    assert [c.stream for c in calls] == [True, False]
    assert streamed == whole and len(streamed.text.split()) > 20
    assert streamed.prompt_tokens == 3 + 8 and not streamed.tokens_estimated   # message_start's input_tokens
    assert streamed.completion_tokens == len(streamed.text.split())          # message_delta's output_tokens


def test_a_streamed_tool_input_is_the_structured_answer():
    schema_answer = lambda model, messages, options: json.dumps(ANSWER)   # noqa: E731
    with LoopbackServer(models=("alpha",), answer=schema_answer) as server:
        streamed = _ask(server, stream=True, schema=ANSWER_SCHEMA)
        whole = _ask(server, stream=False, schema=ANSWER_SCHEMA)
        body = server.calls_for("/v1/messages")[0].body
    assert body["tool_choice"] == {"type": "tool", "name": ANSWER_SCHEMA_NAME} and body["stream"] is True
    assert json.loads(streamed.text) == json.loads(whole.text) == ANSWER   # from input_json_delta pieces
    assert streamed.finish_reason == whole.finish_reason == "stop"


def test_a_streamed_answer_cut_at_max_tokens_is_truncated():
    with LoopbackServer(models=("alpha",)) as server:
        reply = _ask(server, stream=True, max_tokens=5)
    assert reply.finish_reason == "length" and len(reply.text.split()) == 5 == reply.completion_tokens


@pytest.mark.parametrize("fault, reason", [("cut", "stream cut"), ("garbage", "invalid JSON in the stream")])
def test_a_cut_or_garbled_stream_is_a_retryable_failure(fault, reason):
    with LoopbackServer(models=("alpha",), faults=FaultPlan([Rule(fault)])) as server:
        with pytest.raises(BackendError, match=reason) as caught:
            _ask(server, stream=True)
    assert caught.value.retryable


def test_generate_streams_from_anthropic_and_no_stream_asks_for_whole_messages(tmp_path, monkeypatch):
    config_dir = language_config(tmp_path, requests={"timeout_s": 5, **FAST_RETRIES})
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test")
    args = ["--config-dir", str(config_dir), "--endpoint", None, "--models", "alpha,beta", "--types",
            "technical_explanation", "--count", "3", "--api-key-env", "TEST_ANTHROPIC_KEY", "--quiet"]
    answers = {}
    with LoopbackServer(models=("alpha", "beta"), faults=FaultPlan([Rule("cut", times=2)])) as server:
        args[3] = f"anthropic={server.url}"
        for name, extra in (("streamed", []), ("whole", ["--no-stream"])):
            before = len(server.calls_for("/v1/messages"))
            assert main(["generate", "--output-dir", str(tmp_path / name), *args, *extra]) == 0
            calls = server.calls_for("/v1/messages")[before:]
            assert {c.stream for c in calls} == {name == "streamed"}
            db = sqlite3.connect(tmp_path / name / "language_staging" / "ledger.sqlite")
            answers[name] = db.execute("SELECT item_id, status, response, prompt_tokens, completion_tokens "
                                       "FROM results ORDER BY item_id").fetchall()
            db.close()
    cut = [c for c in server.calls if c.outcome == "cut"]
    assert len(cut) == 2 and all(c.stream for c in cut)     # the streamed run's cut streams were asked again
    assert answers["streamed"] == answers["whole"] and len(answers["streamed"]) == 6
    assert all(status == "accepted" for _, status, *_ in answers["streamed"])


# ------------------------------------------------------------------ the events of a longer message
def _events() -> list[dict]:
    """A message as Anthropic streams it: a text block, then the forced tool's block in pieces, pings
    between, cache reads in the input count, the output count cumulative in message_delta."""
    raw = json.dumps(ANSWER)
    return [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                                              "usage": {"input_tokens": 40, "cache_read_input_tokens": 2,
                                                        "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Looking at "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "the graph."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "toolu_1", "name": ANSWER_SCHEMA_NAME, "input": {}}},
        *[{"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": raw[i:i + 7]}}
          for i in range(0, len(raw), 7)],
        {"type": "ping"},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 57}},
        {"type": "message_stop"},
    ]


def _assembled(events, schema) -> object:
    message = StreamedMessage()
    for event in events:
        message.feed(event)
    assert message.stopped
    return message.reply(Request("m", "s", "p", 0.0, 100, 1, schema=schema, schema_name=ANSWER_SCHEMA_NAME))


def test_the_blocks_of_a_longer_message_are_put_together_in_order():
    structured = _assembled(_events(), ANSWER_SCHEMA)
    assert json.loads(structured.text) == ANSWER
    assert (structured.prompt_tokens, structured.completion_tokens, structured.finish_reason) == (42, 57, "stop")
    assert _assembled(_events(), None).text == "Looking at the graph."
    cut_at_the_limit = [*_events()[:-2], {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                                         "usage": {"output_tokens": 100}}, {"type": "message_stop"}]
    assert _assembled(cut_at_the_limit, ANSWER_SCHEMA).finish_reason == "length"


@pytest.mark.parametrize("error_type, retryable", [("overloaded_error", True), ("api_error", True),
                                                   ("invalid_request_error", False)])
def test_an_error_event_ends_the_stream_with_the_apis_error(error_type, retryable):
    message = StreamedMessage()
    message.feed(_events()[0])
    with pytest.raises(BackendError, match=f"server error in stream: {error_type}: Overloaded") as caught:
        message.feed({"type": "error", "error": {"type": error_type, "message": "Overloaded"}})
    assert caught.value.retryable is retryable


def test_a_stream_without_message_stop_is_cut():
    events = [e for e in _events() if e["type"] != "message_stop"]
    message = StreamedMessage()
    for event in events:
        message.feed(event)
    assert not message.stopped   # the backend then fails with "stream cut" (a retryable failure, above)
