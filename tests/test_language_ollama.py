"""The Ollama backend against loopback servers in Ollama's wire format (tests/loopback.py): a wrong URL
told from a missing model through /api/tags (asked once per endpoint), truncation read from
eval_count, --no-stream, keep_alive for --endpoint servers, and an endpoint's faults cooling the
endpoint rather than its model.
"""

from __future__ import annotations

import socket
import sqlite3

import pytest
import yaml

from language.__main__ import EXIT_PARTIAL, main

from conftest import FAST_RETRIES, language_config
from loopback import LoopbackServer


@pytest.fixture
def config_dir(tmp_path):
    """The shipped data_config with fast retries and short timeouts for tests."""
    return language_config(tmp_path, requests={"timeout_s": 2, "max_attempts": 3, **FAST_RETRIES},
                           rotation={"cooldown_s": 0.3, "failures_before_cooldown": 3, "swap_interval": 3})


def _generate(tmp_path, config_dir, *extra):
    return main(["generate", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out"), "--quiet",
                 "--types", "conversation", *extra])


def _results(tmp_path):
    db = sqlite3.connect(tmp_path / "out" / "language_staging" / "ledger.sqlite")
    try:
        return db.execute("SELECT status, reason, model, finish_reason FROM results").fetchall()
    finally:
        db.close()


def _refused_url() -> str:
    """A 127.0.0.1 port nothing listens on (bound, then closed): connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------------------- /api/tags
def test_the_model_list_is_asked_once_per_endpoint_before_the_first_chat(tmp_path, config_dir):
    with LoopbackServer(models=("alpha", "beta")) as server:
        code = _generate(tmp_path, config_dir, "--endpoint", f"ollama={server.url}", "--models", "alpha,beta",
                         "--count", "6", "--concurrency", "4")
        paths = [c.path for c in server.calls_for()]
    assert code == 0
    assert paths[0] == "/api/tags" and paths.count("/api/tags") == 1
    assert paths.count("/api/chat") == 12


def test_a_url_that_is_not_an_ollama_server_is_a_one_line_error_not_a_missing_model(tmp_path, config_dir,
                                                                                     capsys):
    with LoopbackServer(models=("alpha",)) as server:
        wrong = server.url + "/v1"   # an OpenAI-style base URL: /v1/api/tags and /v1/api/chat are 404
        code = _generate(tmp_path, config_dir, "--endpoint", f"ollama={wrong}", "--models", "alpha", "--count", "2")
        chats = server.calls_for("/v1/api/chat")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"no Ollama server at {wrong} (not Ollama: GET /api/tags answered HTTP 404)" in err
    assert "not found" not in err and not chats


def test_a_refused_connection_says_there_is_no_ollama_server_at_the_url(tmp_path, config_dir, capsys):
    url = _refused_url()
    code = _generate(tmp_path, config_dir, "--endpoint", f"ollama={url}", "--models", "alpha", "--count", "1")
    assert code == EXIT_PARTIAL
    reasons = {r[1] for r in _results(tmp_path)}
    assert reasons == {f"no Ollama server at {url} (connection refused) (after 3 calls)"}


def test_a_model_the_server_lacks_is_named_with_the_models_it_has(tmp_path, config_dir):
    with LoopbackServer(models=("alpha", "beta")) as server:
        code = _generate(tmp_path, config_dir, "--endpoint", f"ollama={server.url}", "--models", "alpha,ghost",
                         "--count", "2", "--concurrency", "1")
        ghost_chats = [c for c in server.calls_for("/api/chat") if c.model == "ghost"]
    assert code == EXIT_PARTIAL and not ghost_chats   # the list said so: the model is never asked
    failed = [r for r in _results(tmp_path) if r[0] == "failed"]
    assert failed
    db = sqlite3.connect(tmp_path / "out" / "language_staging" / "ledger.sqlite")
    reasons = {r for (r,) in db.execute("SELECT reason FROM attempts WHERE model = 'ghost'")}
    db.close()
    assert reasons == {f"model 'ghost' is not on the Ollama server at {server.url} (it has: alpha:latest, "
                       "beta:latest)"}


def test_a_model_named_without_its_tag_is_found_under_latest(tmp_path, config_dir):
    with LoopbackServer(models=("alpha:latest", "beta:3b")) as server:
        code = _generate(tmp_path, config_dir, "--endpoint", f"ollama={server.url}", "--models",
                         "alpha,beta:3b", "--count", "2")
    assert code == 0


# ----------------------------------------------------------------------------- truncation
def _final_chunk_patched(monkeypatch, change):
    """The loopback's Ollama final object (streamed or whole), changed by `change(final, gen)`."""
    import loopback

    real = loopback._Ollama._final

    def final(self, gen, finish, pt, ct, now):
        d = real(self, gen, finish, pt, ct, now)
        change(d, gen)
        return d

    monkeypatch.setattr(loopback._Ollama, "_final", final)


def _set_max_tokens(config_dir, n):
    models = yaml.safe_load((config_dir / "models.yaml").read_text())
    models["generation"]["max_tokens"] = n
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))


@pytest.mark.parametrize("max_tokens, truncated", [(30, True), (400, False)])
def test_an_answer_that_used_all_of_num_predict_is_truncated_whatever_done_reason_says(
        tmp_path, config_dir, monkeypatch, max_tokens, truncated):
    # the server says "stop" even when it cut the answer at num_predict (its eval_count tells)
    _final_chunk_patched(monkeypatch, lambda d, gen: d.update(done_reason="stop"))
    _set_max_tokens(config_dir, max_tokens)   # answers have 40-90 words (tokens): 30 cuts every one
    with LoopbackServer(models=("alpha", "beta")) as server:
        _generate(tmp_path, config_dir, "--endpoint", f"ollama={server.url}", "--models", "alpha,beta",
                  "--count", "3")
    rows = _results(tmp_path)
    assert len(rows) == 6
    if truncated:
        assert {(r[0], r[1], r[3]) for r in rows} == {("rejected", "truncated at the token limit", "length")}
    else:
        assert {(r[0], r[3]) for r in rows} == {("accepted", "stop")}


@pytest.mark.parametrize("stream", [True, False])
def test_a_final_object_without_done_reason_is_not_taken_as_complete(tmp_path, config_dir, monkeypatch, stream):
    _final_chunk_patched(monkeypatch, lambda d, gen: d.pop("done_reason"))
    with LoopbackServer(models=("alpha",)) as server:
        code = _generate(tmp_path, config_dir, "--endpoint", f"ollama={server.url}", "--models", "alpha",
                         "--count", "2", *(() if stream else ("--no-stream",)))
        chats = server.calls_for("/api/chat")
    assert code == EXIT_PARTIAL
    assert {c.stream for c in chats} == {stream}
    assert {(r[0], r[1]) for r in _results(tmp_path)} == {
        ("failed", "incomplete answer: no done_reason in the final object (after 3 calls)")}


# ----------------------------------------------------------------------------- --no-stream
def _accepted(tmp_path, out):
    db = sqlite3.connect(tmp_path / out / "language_staging" / "ledger.sqlite")
    try:
        return sorted(db.execute("SELECT item_id, response, completion_tokens FROM results "
                                 "WHERE status = 'accepted'").fetchall())
    finally:
        db.close()


def test_no_stream_asks_for_one_json_object_and_gets_the_same_answers(tmp_path, config_dir):
    args = ("--config-dir", str(config_dir), "--quiet", "--types", "conversation", "--count", "3",
            "--models", "alpha,beta")
    with LoopbackServer(models=("alpha", "beta")) as server:
        assert main(["generate", "--output-dir", str(tmp_path / "streamed"), "--endpoint", f"ollama={server.url}",
                     *args]) == 0
        streamed = server.calls_for("/api/chat")
        assert main(["generate", "--output-dir", str(tmp_path / "whole"), "--endpoint", f"ollama={server.url}",
                     "--no-stream", *args]) == 0
        whole = server.calls_for("/api/chat")[len(streamed):]
    assert len(streamed) == len(whole) == 6
    assert all(c.body["stream"] is True for c in streamed)
    assert all(c.body["stream"] is False for c in whole)
    answers = _accepted(tmp_path, "whole")
    assert len(answers) == 6 and answers == _accepted(tmp_path, "streamed")


def test_no_stream_is_not_abbreviated(tmp_path, config_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--no-str", "--config-dir", str(config_dir), "--output-dir", str(tmp_path / "out")])
    assert exc.value.code == 2 and "unrecognized arguments: --no-str" in capsys.readouterr().err


# ----------------------------------------------------------------------------- keep_alive
@pytest.mark.parametrize("keep_alive", ["10m", "45m"])
def test_an_endpoint_server_gets_the_keep_alive_of_models_yaml(tmp_path, config_dir, keep_alive):
    models = yaml.safe_load((config_dir / "models.yaml").read_text())
    assert models["backends"]["ollama_local"]["keep_alive"] == "10m"   # the shipped value
    models["backends"]["ollama_local"]["keep_alive"] = keep_alive
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))
    with LoopbackServer(models=("alpha",)) as server:
        assert _generate(tmp_path, config_dir, "--endpoint", f"ollama={server.url}", "--models", "alpha",
                         "--count", "2") == 0
        bodies = [c.body for c in server.calls_for("/api/chat")]
    assert len(bodies) == 2 and all(b["keep_alive"] == keep_alive for b in bodies)


# ----------------------------------------------------------------------------- endpoint faults
@pytest.fixture
def cooled(monkeypatch):
    """The labels of the models the scheduler puts in a cooldown, in order; with `cooled.forbid = True`
    a cooldown raises at once (it would otherwise stall the run for cooldown_s)."""
    from language import scheduler

    seen: list[str] = []
    seen_forbid = {"on": False}

    class Watched(scheduler.PoolModel):
        def __setattr__(self, name, value):
            if name == "cool_until" and value > 0:
                seen.append(self.label)
                if seen_forbid["on"]:
                    raise AssertionError(f"{self.label} was put in a cooldown")
            super().__setattr__(name, value)

    monkeypatch.setattr(scheduler, "PoolModel", Watched)
    return seen, seen_forbid


def _set_requests(config_dir, **requests):
    models = yaml.safe_load((config_dir / "models.yaml").read_text())
    models["requests"].update(requests)
    models["rotation"].update(cooldown_s=60)   # the shipped cooldown: a model put in it stalls its items
    (config_dir / "models.yaml").write_text(yaml.safe_dump(models))


def _another_answer(model, messages, options):
    """Another machine's answer for the same model (the default one would be a duplicate)."""
    from loopback import deterministic_answer

    return deterministic_answer(model + " elsewhere", messages, options)


@pytest.mark.parametrize("second_endpoint", [False, True])
def test_three_503s_cool_the_endpoint_not_its_model(tmp_path, config_dir, cooled, second_endpoint):
    seen, forbid = cooled
    forbid["on"] = True
    _set_requests(config_dir, max_attempts=5)
    from loopback import FaultPlan, Rule

    with LoopbackServer(models=("alpha",), faults=FaultPlan([Rule("503", times=3)])) as busy, \
            LoopbackServer(models=("alpha",), answer=_another_answer) as other:
        endpoints = ["--endpoint", f"ollama={busy.url}"] + (["--endpoint", f"ollama={other.url}"] if second_endpoint
                                                             else [])
        code = _generate(tmp_path, config_dir, *endpoints, "--models", "alpha", "--count", "4")
        busy_calls = [c.outcome for c in busy.calls_for("/api/chat")]
        other_calls = [c.outcome for c in other.calls_for("/api/chat")]
    assert code == 0 and not seen
    assert busy_calls.count("503") == 3 and busy_calls.count("ok") == 4
    assert other_calls == (["ok"] * 4 if second_endpoint else [])   # the same model on another server
    assert {r[0] for r in _results(tmp_path)} == {"accepted"} and len(_results(tmp_path)) == (8 if second_endpoint
                                                                                              else 4)


def test_a_model_error_still_cools_the_model(tmp_path, config_dir, cooled):
    seen, _ = cooled
    _set_requests(config_dir, max_attempts=2)
    # the server refuses every chat with a 401 (a proxy's answer; not retryable): the model's error
    with LoopbackServer(models=("alpha",), api_key="sk-elsewhere") as server:
        code = _generate(tmp_path, config_dir, "--endpoint", f"ollama={server.url}", "--models", "alpha",
                         "--count", "3", "--concurrency", "1")
    assert code == EXIT_PARTIAL
    assert seen == ["ollama-0/alpha"]   # after failures_before_cooldown (3) model errors in a row
