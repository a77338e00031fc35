"""The optional judge: a model (of any backend) scores each answer the filters accepted on a rubric.

The judge is asked through the backend's structured-output mechanism (Request.schema: Ollama `format`,
OpenAI `response_format`, Anthropic a forced tool, Gemini `responseSchema`) for one score per rubric
criterion, a whole number from 1 (poor) to 5 (excellent).  An answer whose lowest score is below the
threshold is rejected ("judge: correct=2 relevant=4 specific=3").  A judge that fails (an error after
its retries, or a reply that is not the JSON the schema asks for) is recorded with the answer, which
stays accepted and unjudged, unless the configuration says `required: true` (then it is rejected).

What the ledger and the export keep for a judged answer (`judge`, JSON): {"model": "backend/model",
"scores": {criterion: score}} or {"model": ..., "error": "why the judge failed"}.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Callable

import httpx
import orjson

from .backends import Backend, BackendError, Request

SCORES = (1, 2, 3, 4, 5)
SCHEMA_NAME = "judgement"
SYSTEM = ("You grade answers written for a dataset that trains an assistant for IT operations. "
          "Score strictly; reply with the JSON object asked for and nothing else.")
CRITERIA = {   # what each of the usual criteria asks; another criterion is asked by its name
    "correct": "is it factually right (and, for a monitoring sample, true to the sample's state)?",
    "relevant": "does it answer the question that was asked?",
    "specific": "does it give concrete details (names, numbers, steps) rather than generalities?",
}


def rubric_schema(rubric: tuple[str, ...]) -> dict:
    """The JSON schema of a judgement: every criterion a whole score 1-5, no other key."""
    return {"type": "object", "properties": {c: {"type": "integer", "enum": list(SCORES)} for c in rubric},
            "required": list(rubric), "additionalProperties": False}


def judge_prompt(question: str, answer: str, rubric: tuple[str, ...], label: str | None = None) -> str:
    """The judge's prompt: the question, the answer (and a grounded sample's true state) and the rubric."""
    truth = f"The monitoring sample's true state (its label): {label}.\n\n" if label else ""
    criteria = "\n".join(f"- {c}: {CRITERIA.get(c, c.replace('_', ' ') + '?')}" for c in rubric)
    return (f"Question:\n{question}\n\n{truth}Answer:\n{answer}\n\n"
            f"Score the answer on each criterion from 1 (poor) to 5 (excellent):\n{criteria}\n"
            f"Reply with a JSON object with the keys {', '.join(rubric)}, each a whole number from 1 to 5.")


def parse_scores(text: str, rubric: tuple[str, ...]) -> tuple[dict | None, str | None]:
    """(scores, None) for a reply that is the judgement JSON, else (None, why it is not)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None, f"not JSON: {text[:60]!r}"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    missing = [c for c in rubric if c not in data]
    if missing:
        return None, f"no score for {', '.join(missing)}"
    bad = [c for c in rubric if type(data[c]) is not int or data[c] not in SCORES]
    if bad:
        return None, f"{bad[0]}: {data[bad[0]]!r} is not a whole number from 1 to 5"
    return {c: data[c] for c in rubric}, None


def below(scores: dict, threshold: int) -> bool:
    """Whether a judgement rejects its answer: some criterion scored under the threshold."""
    return min(scores.values()) < threshold


def describe(scores: dict) -> str:
    return " ".join(f"{c}={s}" for c, s in scores.items())


@dataclass(frozen=True)
class JudgeCall:
    """One call to the judge model: a row of the ledger's attempts (purpose "judge") and what the run's
    totals and budget count."""

    attempt: int
    endpoint: str
    outcome: str                  # "ok" (the server answered) or "error"
    reason: str | None
    http_status: int | None
    latency_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_estimated: bool = False


class JudgeModel:
    """Scores answers with one model of one backend, through that backend's endpoint pool
    (scheduler.EndpointPool: the run's own when the judge uses a backend of the run, so judge and
    answer calls share each endpoint's slots, and an endpoint set aside after a failure or a 429's
    Retry-After is set aside for both)."""

    def __init__(self, config, backend: Backend, *, pool, max_attempts: int, backoff_base_s: float,
                 backoff_max_s: float, max_down_s: float, seed: int):
        self.config, self.backend, self.pool = config, backend, pool
        self.label = f"{backend.name}/{config.model}"
        self.max_attempts, self.backoff = max_attempts, (backoff_base_s, backoff_max_s)
        self.max_down_s = max_down_s
        self.seed = seed
        self.schema = rubric_schema(config.rubric)

    def request(self, question: str, answer: str, label: str | None = None) -> Request:
        """The judge's request for one answer (temperature 0, the rubric's schema)."""
        return Request(self.config.model, SYSTEM, judge_prompt(question, answer, self.config.rubric, label),
                       0.0, self.config.max_tokens, self.seed, None, 1.0, self.schema, SCHEMA_NAME)

    async def score(self, client: httpx.AsyncClient, question: str, answer: str, label: str | None = None, *,
                    hold: Callable[[Request], object | None] = lambda request: (),
                    done: Callable[[JudgeCall, object], None] = lambda call, held: None,
                    release: Callable[[object], None] = lambda held: None) -> dict | None:
        """The judgement of one answer, {"model", "scores"} or {"model", "error"} (never raises a
        BackendError: retryable failures are retried within max_attempts, then recorded); None when
        `hold` refused a call (the run's budget: the answer stays unjudged and unrecorded).

        Around each call: `hold(request)` before it (what it holds, or None to refuse the call), then
        `done(call, held)` with the call's outcome and tokens, or `release(held)` when the call was
        cancelled."""
        request = self.request(question, answer, label)
        reason = "no call made"
        for attempt in range(1, self.max_attempts + 1):
            held = hold(request)
            if held is None:
                return None
            reply, error = None, None
            try:
                slot = await self.pool.acquire()
                started = time.monotonic()
                try:
                    reply = await self.backend.generate(client, slot.url, request)
                except BackendError as exc:
                    error = exc
                except httpx.HTTPError as exc:
                    error = BackendError(f"HTTP error: {self.backend.redact(str(exc))[:200]}", retryable=True)
                finally:
                    latency = time.monotonic() - started
                    await self.pool.release(slot, latency, error, self.max_down_s)
            except BaseException:   # cancelled: nothing to record, the hold is given back
                release(held)
                raise
            endpoint = slot.url
            if error is not None:
                done(JudgeCall(attempt, endpoint, "error", error.reason, error.status, latency), held)
                reason = error.reason
                if not error.retryable:
                    break
            else:
                done(JudgeCall(attempt, endpoint, "ok", None, None, latency, reply.prompt_tokens,
                               reply.completion_tokens, reply.tokens_estimated), held)
                scores, problem = parse_scores(reply.text.strip(), self.config.rubric)
                if scores is not None:
                    return {"model": self.label, "scores": scores}
                reason = f"invalid judgement: {problem}"
                break   # the model's answer, not the endpoint's fault: asking again at temperature 0 repeats it
            if attempt < self.max_attempts:
                base, most = self.backoff
                await asyncio.sleep(error.retry_after if error.retry_after is not None else
                                    min(most, base * 2 ** (attempt - 1)) * random.random())
        return {"model": self.label, "error": reason}

    def verdict(self, judgement: dict) -> str | None:
        """None when the judged answer stays accepted, else the rejection's reason."""
        scores = judgement.get("scores")
        if scores is None:
            return f"judge failed: {judgement['error']}" if self.config.required else None
        return f"judge: {describe(scores)}" if below(scores, self.config.threshold) else None
