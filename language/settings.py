"""data_config/models.yaml: backends, model pool, rotation, request limits, targets, quality.

Validated at the edge into frozen dataclasses; API keys are read from the environment variables the
file names, at the moment a backend is built, and never stored in these objects' reprs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from datasafe.yamlcheck import Validator, read_yaml

from .backends import BACKENDS
from .domain import DATA_DIR, MAX_FILE_BYTES, SAMPLE_TYPES
from .errors import ConfigError

MODELS_FILE = "models.yaml"
RELEVANCE_GATES = ("auto", "embedding", "lexical")  # language/relevance.py


@dataclass(frozen=True)
class BackendSpec:
    name: str
    type: str
    enabled: bool
    models: tuple[str, ...]
    endpoints: tuple[str, ...] = ()
    api_key_env: str | None = None
    concurrency: int = 1          # requests in flight per endpoint
    keep_alive: str | None = None
    threads: int = 1
    context_tokens: int = 2048
    stream: bool = True           # Ollama: NDJSON chunks, Anthropic: server-sent events; False: one JSON object (--no-stream)
    # (model, price per million input tokens, per million output tokens); a model not listed costs 0
    prices: tuple[tuple[str, float, float], ...] = ()


@dataclass(frozen=True)
class Rotation:
    swap_interval: int
    models_per_prompt: int
    failures_before_cooldown: int
    cooldown_s: float


@dataclass(frozen=True)
class Requests:
    timeout_s: float
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float


@dataclass(frozen=True)
class Generation:
    temperature: float
    max_tokens: int
    seed: int
    repeat_penalty: float = 1.0  # llama.cpp / Ollama only (the embedded model loops without it)


@dataclass(frozen=True)
class Quality:
    min_words: int
    near_duplicate_jaccard: float
    length_tolerance: float = 0.25      # an answer may miss the requested word range by this share of its bounds
    tokens_per_word: float = 1.5        # max_tokens of a prompt asking for at most N words: N x (1 + tolerance) x this
    relevance: str = "auto"             # free-text relevance gate: auto (embedding when installed), embedding, lexical
    relevance_min_similarity: float = 0.3   # embedding gate: least cosine of answer and term + prompt
    semantic_duplicate_cosine: float = 0.95  # embedding gate: an answer this close to an accepted one is a duplicate


@dataclass(frozen=True)
class Grounding:
    normal_share: float = 0.5     # share of normal samples among grounded prompts (the rest: evenly per kind)


@dataclass(frozen=True)
class Judge:
    """An optional judge (language/judge.py): a model of one of the backends scores every answer the
    filters accepted on each rubric criterion (1-5); an answer with a score below `threshold` is rejected.
    A judge that fails (an error, invalid JSON) leaves the answer accepted and unjudged, unless `required`."""

    backend: str                  # a backends entry (enabled or not: a judge-only server may be off for answers)
    model: str
    threshold: int = 3
    rubric: tuple[str, ...] = ("correct", "relevant", "specific")
    required: bool = False
    max_tokens: int = 200


@dataclass(frozen=True)
class Settings:
    source: str
    backends: tuple[BackendSpec, ...]
    rotation: Rotation
    requests: Requests
    generation: Generation
    targets: dict[str, int] = field(hash=False)
    quality: Quality = field(default=Quality(20, 0.9))
    path: str | None = field(default=None, compare=False)  # the file read, re-read for endpoint changes mid-run
    currency: str = "USD"         # the currency of the backends' prices (a label; nothing is converted)
    grounding: Grounding = field(default=Grounding())
    judge: Judge | None = None    # None: answers are not judged (no judge requests at all)

    def enabled(self) -> tuple[BackendSpec, ...]:
        return tuple(b for b in self.backends if b.enabled)

    def fingerprint(self) -> str:
        """What decides the content of an answer and whether it is accepted (not limits like concurrency or
        timeouts): generation and quality settings, and the judge's when one is configured (a staging
        judged by another judge, or by none, has other item ids, so a rerun asks its items again)."""
        data = {"generation": self.generation.__dict__, "quality": self.quality.__dict__}
        if self.judge is not None:
            data["judge"] = dataclasses.asdict(self.judge)
        return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def load_settings(path: Path | None = None) -> Settings:
    path = Path(path) if path is not None else DATA_DIR / MODELS_FILE
    source = MODELS_FILE if path == DATA_DIR / MODELS_FILE else str(path)
    data = read_yaml(path, source, ConfigError, MAX_FILE_BYTES)
    v = Validator(source, ConfigError)
    root = v.mapping(data, "", required=("backends", "rotation", "requests", "generation", "targets"),
                     optional=("quality", "currency", "grounding", "judge"))
    backends_node = v.mapping(root["backends"], "backends")
    if not backends_node:
        v.fail("backends", "expected at least one backend")
    backends = tuple(_backend(v, name, node) for name, node in backends_node.items())
    r = v.mapping(root["rotation"], "rotation", required=("swap_interval", "models_per_prompt"),
                  optional=("failures_before_cooldown", "cooldown_s"))
    q = v.mapping(root["requests"], "requests", required=("timeout_s", "max_attempts"),
                  optional=("backoff_base_s", "backoff_max_s"))
    g = v.mapping(root["generation"], "generation", required=("temperature", "max_tokens", "seed"),
                  optional=("repeat_penalty",))
    t = v.mapping(root["targets"], "targets", optional=SAMPLE_TYPES)
    qual = v.mapping(root.get("quality") or {}, "quality", optional=(
        "min_words", "near_duplicate_jaccard", "length_tolerance", "tokens_per_word", "relevance",
        "relevance_min_similarity", "semantic_duplicate_cosine"))
    relevance = v.string(qual.get("relevance", "auto"), "quality.relevance")
    if relevance not in RELEVANCE_GATES:
        v.fail("quality.relevance", f"{relevance!r} is not one of {', '.join(RELEVANCE_GATES)}")
    grounding = v.mapping(root.get("grounding") or {}, "grounding", optional=("normal_share",))
    return Settings(
        source=source, backends=backends,
        rotation=Rotation(v.whole(r["swap_interval"], "rotation.swap_interval", 1, 10**9),
                          v.whole(r["models_per_prompt"], "rotation.models_per_prompt", 1, 100),
                          v.whole(r.get("failures_before_cooldown", 3), "rotation.failures_before_cooldown", 1, 10**6),
                          v.number(r.get("cooldown_s", 60), "rotation.cooldown_s", 0, 86400)),
        requests=Requests(v.number(q["timeout_s"], "requests.timeout_s", 0.01, 86400),
                          v.whole(q["max_attempts"], "requests.max_attempts", 1, 100),
                          v.number(q.get("backoff_base_s", 0.5), "requests.backoff_base_s", 0, 3600),
                          v.number(q.get("backoff_max_s", 30), "requests.backoff_max_s", 0, 86400)),
        generation=Generation(v.number(g["temperature"], "generation.temperature", 0, 2),
                              v.whole(g["max_tokens"], "generation.max_tokens", 1, 1_000_000),
                              v.whole(g["seed"], "generation.seed", 0, 2**63 - 1),
                              v.number(g.get("repeat_penalty", 1.0), "generation.repeat_penalty", 0.5, 3.0)),
        targets={k: v.whole(n, f"targets.{k}", 0, 10**8) for k, n in t.items()},
        quality=Quality(v.whole(qual.get("min_words", 20), "quality.min_words", 0, 100000),
                        v.number(qual.get("near_duplicate_jaccard", 0.9), "quality.near_duplicate_jaccard", 0, 1),
                        v.number(qual.get("length_tolerance", 0.25), "quality.length_tolerance", 0, 10),
                        v.number(qual.get("tokens_per_word", 1.5), "quality.tokens_per_word", 0.5, 10),
                        relevance,
                        v.number(qual.get("relevance_min_similarity", 0.3), "quality.relevance_min_similarity", -1, 1),
                        v.number(qual.get("semantic_duplicate_cosine", 0.95), "quality.semantic_duplicate_cosine",
                                 -1, 1)),
        path=str(path),
        currency=v.string(root.get("currency", "USD"), "currency"),
        grounding=Grounding(v.number(grounding.get("normal_share", 0.5), "grounding.normal_share", 0, 1)),
        judge=_judge(v, root.get("judge"), backends),
    )


def _judge(v: Validator, node: Any, backends: tuple[BackendSpec, ...]) -> Judge | None:
    """`judge: {backend, model, threshold, rubric, required, max_tokens}`; absent or null: no judge."""
    if node is None:
        return None
    j = v.mapping(node, "judge", required=("backend",),
                  optional=("model", "threshold", "rubric", "required", "max_tokens"))
    name = v.string(j["backend"], "judge.backend")
    spec = next((b for b in backends if b.name == name), None)
    if spec is None:
        v.fail("judge.backend", f"{name!r} is not one of the backends ({', '.join(b.name for b in backends)})")
    model = v.string(j.get("model", spec.models[0]), "judge.model")
    rubric = j.get("rubric", list(Judge.rubric))
    if not isinstance(rubric, list) or not rubric:
        v.fail("judge.rubric", "expected a non-empty list of criteria (e.g. [correct, relevant, specific])")
    criteria = tuple(v.string(c, f"judge.rubric[{i}]") for i, c in enumerate(rubric))
    for i, c in enumerate(criteria):
        if not c.replace("_", "").isalnum() or c in criteria[:i]:
            v.fail(f"judge.rubric[{i}]", f"{c!r} must be a distinct name of letters, digits and _")
    return Judge(backend=name, model=model, threshold=v.whole(j.get("threshold", 3), "judge.threshold", 1, 5),
                 rubric=criteria, required=v.boolean(j.get("required", False), "judge.required"),
                 max_tokens=v.whole(j.get("max_tokens", 200), "judge.max_tokens", 16, 100_000))


def _backend(v: Validator, name: str, node: Any) -> BackendSpec:
    key = f"backends.{name}"
    m = v.mapping(node, key, required=("type",), optional=(
        "enabled", "models", "endpoints", "api_key_env", "concurrency", "keep_alive", "threads", "context_tokens",
        "prices"))
    kind = v.string(m["type"], f"{key}.type")
    if kind not in BACKENDS:
        v.fail(f"{key}.type", f"{kind!r} is not one of {', '.join(BACKENDS)}")
    models = m.get("models", [])
    if not isinstance(models, list) or not models:
        v.fail(f"{key}.models", "expected a non-empty list of model names")
    endpoints = m.get("endpoints", [])
    if not isinstance(endpoints, list):
        v.fail(f"{key}.endpoints", "expected a list of URLs")
    for i, url in enumerate(endpoints):
        url = v.string(url, f"{key}.endpoints[{i}]")
        if not url.startswith(("http://", "https://")):
            v.fail(f"{key}.endpoints[{i}]", f"{url!r} is not an http(s) URL")
    if BACKENDS[kind].needs_endpoint and not endpoints:
        v.fail(f"{key}.endpoints", f"a {kind} backend needs at least one endpoint URL")
    api_key_env = m.get("api_key_env")
    if api_key_env is not None:
        api_key_env = v.string(api_key_env, f"{key}.api_key_env")
        if not api_key_env.replace("_", "").isalnum():
            v.fail(f"{key}.api_key_env", "must name an environment variable (letters, digits, _)")
    return BackendSpec(
        name=name, type=kind, enabled=v.boolean(m.get("enabled", True), f"{key}.enabled"),
        models=tuple(v.string(x, f"{key}.models[{i}]") for i, x in enumerate(models)),
        endpoints=tuple(u.rstrip("/") for u in endpoints), api_key_env=api_key_env,
        concurrency=v.whole(m.get("concurrency", 1), f"{key}.concurrency", 1, 4096),
        keep_alive=None if m.get("keep_alive") is None else v.string(m["keep_alive"], f"{key}.keep_alive"),
        threads=v.whole(m.get("threads", 1), f"{key}.threads", 1, 256),
        context_tokens=v.whole(m.get("context_tokens", 2048), f"{key}.context_tokens", 128, 1_000_000),
        prices=_prices(v, key, m.get("prices", {}), models),
    )


MAX_PRICE = 1_000_000.0   # per million tokens: far above any real price, low enough to catch a typo's extra zeros


def _prices(v: Validator, key: str, node: Any, models: list) -> tuple[tuple[str, float, float], ...]:
    """`prices: {model: {input: x, output: y}}`, per million tokens, for models of this backend only."""
    node = v.mapping(node if node is not None else {}, f"{key}.prices")
    out = []
    for model, price in node.items():
        where = f"{key}.prices.{model}"
        if model not in models:
            v.fail(where, f"{model!r} is not one of this backend's models ({', '.join(map(str, models))})")
        p = v.mapping(price, where, required=("input", "output"), optional=())
        out.append((model, v.number(p["input"], f"{where}.input", 0, MAX_PRICE),
                    v.number(p["output"], f"{where}.output", 0, MAX_PRICE)))
    return tuple(out)
