"""A generation job: what `python -m language` does, as functions the command line, the benchmarks
and the tests all call.

- `choose_targets`, `backend_specs`: the prompts per type and the backends of a run, checked (errors
  name the option or the models.yaml entry);
- `plan_work`: the run's work items, backends and vocabulary, all checked before the staging is
  touched (for retry-failed: the last generate's work, from the ledger);
- `open_session`: the staging's metadata for this run (targets, seed, config hash, batch), the
  failed items forgotten on retry, the items still to do, the duplicate index seeded with every
  accepted answer;
- `run_session`: the items asked of the backends (started and closed around the run);
- `export`: every accepted sample in staging (or a selection) written as the language dataset;
- `status_report`: what a staging folder holds (per type, per model, rejections, tokens, damage);
- `quality_report`: how good its answers are (per type and model: reasons, distinct-2, near duplicates,
  length, verifier agreement, relevance, judge scores), the export's `quality` metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .errors import LanguageError

STAGING_NAME = "language_staging"
MAX_COUNT = 10**8  # prompts per type, as for the targets in models.yaml


def config_hash(domain, settings) -> str:
    """The identity of a run's prompts: finished items of another config are not reused on resume."""
    parts = [domain.system_prompt, repr(sorted(domain.templates.items())), repr(domain.technical_terms),
             repr(domain.error_patterns), repr(domain.personalities), repr(domain.question_styles),
             repr(domain.english_patterns), repr(domain.project_management_terms), repr(domain.banking_terms),
             repr(domain.metrics_patterns), settings.fingerprint(), str(settings.rotation.models_per_prompt)]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def choose_targets(settings, *, types: str | None, count: int | None) -> dict[str, int]:
    """Prompts per type: models.yaml's targets, restricted to `types` (comma-separated) and set to
    `count` each when given."""
    from .domain import SAMPLE_TYPES

    targets = dict(settings.targets)
    if types:
        chosen = [t.strip() for t in types.split(",") if t.strip()]
        for t in chosen:
            if t not in SAMPLE_TYPES:
                raise LanguageError(f"--types: unknown sample type {t!r} (known: {', '.join(SAMPLE_TYPES)})")
        targets = {t: targets.get(t, 0) for t in chosen}
    if count is not None:
        if count < 0:
            raise LanguageError(f"--count: must be at least 0, got {count}")
        if count > MAX_COUNT:
            shown = f"{count}" if count < 10**16 else f"a number of {len(str(count))} digits"
            raise LanguageError(f"--count: at most {MAX_COUNT:,} prompts per type (the limit of targets in "
                                f"models.yaml), got {shown}")
        targets = {t: count for t in targets}
    return targets


def backend_specs(settings, *, names: list[str], endpoints: list[str], models: str | None,
                  api_key_env: str | None, concurrency: int | None, stream: bool = True) -> list:
    """The backends of a run: those `names` picks from models.yaml, ad-hoc `endpoints` (TYPE=URL)
    serving `models`, else the enabled ones; `concurrency` overrides every backend's; `stream=False`
    asks every backend for the whole answer at once (Ollama and Anthropic stream otherwise)."""
    from .backends import BACKENDS
    from .settings import BackendSpec

    specs = []
    known = {b.name: b for b in settings.backends}
    for name in names:
        if name not in known:
            raise LanguageError(f"--backend: {name!r} is not in {settings.source} (known: {', '.join(known)})")
        specs.append(known[name])
    if endpoints:
        model_names = [m.strip() for m in (models or "").split(",") if m.strip()]
        if not model_names:
            raise LanguageError("--endpoint: give the model names with --models a,b")
        for i, entry in enumerate(endpoints):
            kind, _, url = entry.partition("=")
            remote = [t for t, cls in BACKENDS.items() if cls.needs_endpoint]
            if kind not in remote or not url.startswith(("http://", "https://")):
                raise LanguageError(f"--endpoint: {entry!r} is not TYPE=URL with TYPE one of {', '.join(remote)}")
            specs.append(BackendSpec(name=f"{kind}-{i}", type=kind, enabled=True, models=tuple(model_names),
                                     endpoints=(url.rstrip("/"),), api_key_env=api_key_env,
                                     concurrency=concurrency or 4, keep_alive=_keep_alive(settings, kind)))
    if not specs:
        specs = list(settings.enabled())
    if concurrency is not None:
        if concurrency < 1:
            raise LanguageError(f"--concurrency: must be at least 1, got {concurrency}")
        specs = [dataclasses.replace(s, concurrency=concurrency) for s in specs]
    if not stream:
        specs = [dataclasses.replace(s, stream=False) for s in specs]
    if not specs:
        raise LanguageError(f"no backend enabled in {settings.source}; enable one or pass --endpoint TYPE=URL")
    return specs


def _keep_alive(settings, kind: str) -> str | None:
    """An ad-hoc server's keep_alive: the first one models.yaml gives a backend of its type (enabled or not)."""
    return next((b.keep_alive for b in settings.backends if b.type == kind and b.keep_alive), None)


# ---------------------------------------------------------------------------- a run
@dataclass
class Work:
    """What a run asks: prompts per type, its seed, the work items and the backends that answer them."""

    targets: dict[str, int]
    seed: int
    from_metrics: Path | None   # the simulator output grounded prompts come from
    normal_share: float         # share of normal samples among the grounded prompts
    items: list
    vocabulary: object | None   # grounding.Vocabulary, for grounded prompts
    backends: list
    free_text: object = None    # quality.FreeTextGates of the run (None: built by open_session)


def plan_work(domain, settings, specs, *, targets: dict[str, int], seed: int, from_metrics: Path | None,
              config_dir: Path | None, ledger=None, normal_share: float | None = None) -> Work:
    """The run's work, all checked; `ledger` is the staging's for retry-failed (the last generate's
    targets, seed, --from-metrics and --normal-share are read from it), else None; `normal_share`
    (None: models.yaml's grounding.normal_share) is the share of normal samples among grounded prompts."""
    from .backends import build_backend
    from .items import build_items

    if ledger is not None:
        targets = json.loads(ledger.get_meta("targets") or "null")
        if not isinstance(targets, dict):
            raise LanguageError(f"retry-failed: no earlier generate in {ledger.dir}")
        seed = int(ledger.get_meta("seed") or seed)
        from_metrics = Path(ledger.get_meta("from_metrics")) if ledger.get_meta("from_metrics") else None
        normal_share = float(ledger.get_meta("normal_share") or settings.grounding.normal_share)
    normal_share = settings.grounding.normal_share if normal_share is None else normal_share
    if not 0.0 <= normal_share <= 1.0:
        raise LanguageError(f"--normal-share: must be between 0 and 1, got {normal_share}")
    targets = dict(targets)
    backends = [build_backend(s) for s in specs]
    n_models = sum(len(s.models) for s in specs)
    grounded_count = targets.pop("metrics_explanation", 0) if from_metrics else 0
    items = build_items(domain, settings, targets, n_models=n_models, seed=seed)
    vocabulary = None
    if from_metrics:
        from .grounding import load_vocabulary, metric_sample_items
        vocabulary = load_vocabulary(config_dir)
        items += metric_sample_items(from_metrics, grounded_count, domain,
                                     models_per_prompt=settings.rotation.models_per_prompt,
                                     n_models=n_models, options=settings.fingerprint(), seed=seed,
                                     normal_share=normal_share)
        targets["metrics_explanation"] = grounded_count
    return Work(targets, seed, from_metrics, normal_share, items, vocabulary, backends,
                free_text_gates(settings, domain))


@dataclass
class Session:
    """One run over a staging folder: its settings (with the run's seed), identity and items to do."""

    settings: object
    config_hash: str
    previous_hash: str | None   # the config hash of the staging's last run (None: first run)
    session_id: str
    batch: int
    todo: list
    dedup: object               # quality.DuplicateIndex of every accepted answer in staging
    retried: int                # failed items forgotten for retry-failed


def open_session(ledger, domain, settings, work: Work, *, retry: bool) -> Session:
    """Record the run in the staging's ledger and find what is left to do."""
    from .quality import DuplicateIndex

    settings = dataclasses.replace(settings, generation=dataclasses.replace(settings.generation, seed=work.seed))
    ledger.set_meta("targets", json.dumps(work.targets, sort_keys=True))
    ledger.set_meta("seed", str(work.seed))
    if work.from_metrics:
        ledger.set_meta("from_metrics", str(work.from_metrics))
        ledger.set_meta("normal_share", repr(work.normal_share))
    identity = config_hash(domain, settings)
    previous = ledger.get_meta("config_hash")
    ledger.set_meta("config_hash", identity)
    retried = ledger.forget(("failed",)) if retry else 0
    done = ledger.finished_ids()
    todo = [it for it in work.items if it.item_id not in done]
    batch = int(ledger.get_meta("generation_batches") or 0) + 1
    ledger.set_meta("generation_batches", str(batch))
    ledger.set_meta("current_items", ",".join(sorted(it.item_id for it in work.items)))
    session_id = f"{stamp()}-{hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:6]}"
    dedup = DuplicateIndex(settings.quality.near_duplicate_jaccard,
                           free_text=work.free_text if work.free_text is not None else free_text_gates(settings,
                                                                                                       domain))
    for item_id, text in ledger.accepted_texts():  # every accepted answer is exported, so none may repeat
        dedup.add(item_id, text)
    semantic = dedup.free_text.semantic
    if semantic is not None:  # the accepted free-text answers, embedded in batches
        accepted = ledger.accepted_free_texts()
        if accepted:
            semantic.add_many([i for i, _ in accepted], semantic.gate.embed([t for _, t in accepted]))
    ledger.set_meta("free_text_gates", dedup.free_text.describe())
    return Session(settings, identity, previous, session_id, batch, todo, dedup, retried)


def free_text_gates(settings, domain=None):
    """The free-text gates of a run: length, the relevance gate models.yaml's quality.relevance picks
    (language/relevance.py), and semantic duplicates with the embedding gate."""
    from .quality import FreeTextGates
    from .relevance import build_gate

    q = settings.quality
    relevance = build_gate(q.relevance, q.relevance_min_similarity, domain)
    return FreeTextGates(q.length_tolerance, relevance, relevance.semantic_index(q.semantic_duplicate_cosine))


async def run_session(ledger, work: Work, session: Session, *, advance: Callable[[], None] | None = None,
                      budget=None):
    """Ask the backends for every item still to do (`advance` after each); the run's statistics."""
    from .scheduler import Runner

    started = []
    try:
        for b in work.backends:
            await b.start()
            started.append(b)
        runner = Runner(session.settings, work.backends, ledger, session.dedup, session_id=session.session_id,
                        generation_batch=session.batch,
                        progress=advance, vocabulary=work.vocabulary, budget=budget)
        stats = await runner.run(session.todo)
    finally:
        for b in started:
            await b.close()
    ledger.flush_shards(force=True)
    return stats


# ---------------------------------------------------------------------------- exports
def export(ledger, domain, settings, output_dir: Path, *, config_hash: str, session_id: str, new_samples: int,
           only_types: list[str] | None = None, only_last_run: bool = False, allow_fewer: bool = False,
           chat_structured: bool = False) -> int:
    """Write the language dataset and its chat JSONL from the staging's accepted samples (all, or
    those of `only_types` / the last generate's items); the number of samples written.
    `chat_structured`: the chat JSONL carries a structured answer's JSON, not its explanation text."""
    from .export import grounding_table, metadata, select_samples, write_exports
    from .usage import Prices, usage_summary

    items = last_run_items(ledger) if only_last_run else None
    samples = select_samples(ledger.samples(), types=only_types, items=items)
    results = ledger.results_frame()
    pool = sorted({m for m in samples["model"].to_list()}) if len(samples) else []
    meta = metadata(samples, generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    session_id=session_id, config_hash=config_hash, new_samples=new_samples, model_pool=pool,
                    swap_interval=settings.rotation.swap_interval,
                    questions_processed=len(ledger.finished_ids()),
                    grounding=grounding_table(results),
                    usage=usage_summary(ledger.token_totals(), Prices.of_settings(settings)),
                    quality=quality_figures(select_samples(results, types=only_types, items=items)))
    output_dir.mkdir(parents=True, exist_ok=True)
    write_exports(output_dir, meta, samples, domain.system_prompt, allow_fewer=allow_fewer,
                  chat_structured=chat_structured)
    return len(samples)


@dataclass
class StatusReport:
    """What a staging folder holds; the frames are small tables for printing."""

    staging: Path
    finished: int
    calls: int
    config_hash: str | None
    per_type: object          # type x status -> items
    per_model: object         # model -> accepted
    grounding: dict           # model -> agreement with the simulator's labels
    problems: object          # (items, status, reason), most frequent first, at most 15
    usage: object             # tokens and cost per model
    notes: list[str]
    last_run_items: int       # items of the last generate
    last_run_left: int        # of those, not finished
    damaged_shards: list[str]


def status_report(output_dir: Path, models_yaml: Path | None) -> StatusReport | None:
    """The status of `output_dir`'s staging (None when there is none); prices from `models_yaml`."""
    import polars as pl

    from .export import grounding_table
    from .ledger import Ledger
    from .usage import status_usage

    staging = output_dir / STAGING_NAME
    if not (staging / "ledger.sqlite").exists():
        return None
    ledger = Ledger(staging)
    try:
        results = ledger.results_frame()
        calls = len(ledger.attempts_frame())
        current = last_run_items(ledger)
        per_type = results.group_by("type", "status").len().pivot("status", index="type", values="len") \
            .fill_null(0).sort("type") if len(results) else results
        per_model = results.filter(pl.col("status") == "accepted").group_by("model").len() \
            .sort("len", "model", descending=[True, False]).rename({"len": "accepted"})
        problems = results.filter(pl.col("status") != "accepted").group_by("status", "reason").len() \
            .sort("len", "reason", descending=[True, False]).rename({"len": "items"}) \
            .select("items", "status", "reason").head(15)
        usage, notes = status_usage(ledger, models_yaml)
        left = len(current - set(results["item_id"].to_list())) if len(results) else len(current)
        return StatusReport(staging, len(results), calls, ledger.get_meta("config_hash"), per_type, per_model,
                            grounding_table(results) if len(results) else {}, problems, usage, notes,
                            len(current), left, ledger.damaged_shards())
    finally:
        ledger.close()


# ---------------------------------------------------------------------------- the quality report
ALL_MODELS = "(all)"    # the model of a type's row over every model's answers
# rejections of a near duplicate of an accepted answer: MinHash word 3-grams, embedding cosine
NEAR_DUPLICATE_KINDS = ("near duplicate", "semantic duplicate")
# rejections by a gate after the verifier (language/scheduler.py Runner._judge, then the judge model):
# a grounded answer rejected so had passed the verifier
AFTER_VERIFIER_KINDS = ("exact duplicate", "near duplicate", "semantic duplicate", "judge")


@dataclass
class QualityReport:
    """The quality of a staging's answers, per type and model (`quality_figures`)."""

    staging: Path
    figures: dict    # type -> model -> figures (ALL_MODELS: the type's answers of every model)


def quality_report(output_dir: Path) -> QualityReport | None:
    """The quality figures of `output_dir`'s staging (None when there is none)."""
    from .ledger import Ledger

    staging = output_dir / STAGING_NAME
    if not (staging / "ledger.sqlite").exists():
        return None
    ledger = Ledger(staging)
    try:
        return QualityReport(staging, quality_figures(ledger.results_frame()))
    finally:
        ledger.close()


def quality_figures(results) -> dict:
    """Per type and model (and per type over every model, ALL_MODELS), from the ledger's results:

    - answers (accepted or rejected: the server answered), accepted, rejected, failed, and the
      rejections by reason kind (quality.reason_kind), most frequent first;
    - distinct_2: distinct word bigrams over all word bigrams of the accepted answers (words as the
      quality filters read them, bigrams within an answer);
    - near_duplicate_rate: rejections as a near or semantic duplicate over the answers;
    - words: median, p10 and p90 of the accepted answers' lengths in words (linear interpolation);
    - verifier: for grounded answers (with a label) that reached the verifier, how many it accepted
      (accepted ones, and those rejected by a later gate) of those it judged (those and its own
      "grounding: ..." rejections); None for a free-text type;
    - relevance: per relevance gate (the `relevance_gate` column: "lexical", "embedding"; "unrecorded" for
      scores of a ledger from before that column), the answers scored and their mean score; judge: the
      mean of each rubric score in the `judge` column (JSON, language/judge.py) over the answers it
      scored; None where the ledger has no such column or value.
    Rates are rounded to 4 decimals."""
    import polars as pl

    from .quality import REASON_KIND_PATTERN, WORD_PATTERN

    if not len(results):
        return {}
    keys = ["type", "model"]
    status, kind = pl.col("status"), pl.col("kind")
    answered, accepted = status.is_in(["accepted", "rejected"]), status == "accepted"
    # a column with no value yet is read from SQLite as of type null
    rows = results.with_columns(pl.col("model", "reason", "response", "label").cast(pl.Utf8))
    rows = rows.with_columns(
        pl.col("model").fill_null("-"),
        kind=pl.col("reason").str.extract(REASON_KIND_PATTERN, 1),
        words=pl.col("response").fill_null("").str.to_lowercase().str.extract_all(WORD_PATTERN))
    rows = pl.concat([rows, rows.with_columns(model=pl.lit(ALL_MODELS))])
    grounded = pl.col("label").is_not_null() & answered
    verifier_passed = grounded & (accepted | kind.is_in(AFTER_VERIFIER_KINDS))
    verifier_rejected = grounded & pl.col("reason").str.starts_with("grounding:")
    length = pl.col("words").list.len().filter(accepted)
    bigrams = pl.col("words").list.eval(pl.concat_str(pl.element(), pl.element().shift(-1), separator=" "))
    figures = rows.group_by(keys).agg(
        answers=answered.sum(), accepted=accepted.sum(), rejected=(status == "rejected").sum(),
        failed=(status == "failed").sum(), near_duplicates=(answered & kind.is_in(NEAR_DUPLICATE_KINDS)).sum(),
        verifier_judged=(verifier_passed | verifier_rejected).sum(), verifier_accepted=verifier_passed.sum(),
        words_median=length.median(), words_p10=length.quantile(0.1, "linear"),
        words_p90=length.quantile(0.9, "linear"),
        bigrams=bigrams.filter(accepted).explode().drop_nulls().len(),
        distinct_bigrams=bigrams.filter(accepted).explode().drop_nulls().n_unique())
    reasons: dict = {}
    for t, m, r, n in rows.filter(status == "rejected").group_by(*keys, "kind").len() \
            .sort("len", "kind", descending=[True, False]).iter_rows():
        reasons.setdefault((t, m), {})[r] = n
    relevance = _relevance_means(rows, keys)
    judge = _judge_means(rows, keys)
    out: dict = {}
    for f in figures.sort("type", pl.col("model") == ALL_MODELS, "model").iter_rows(named=True):
        key = (f["type"], f["model"])
        out.setdefault(f["type"], {})[f["model"]] = {
            "answers": f["answers"], "accepted": f["accepted"], "rejected": f["rejected"], "failed": f["failed"],
            "rejected_by_reason": reasons.get(key, {}),
            "distinct_2": _rate(f["distinct_bigrams"], f["bigrams"]),
            "near_duplicate_rate": _rate(f["near_duplicates"], f["answers"]),
            "words": None if f["accepted"] == 0 else
            {"median": f["words_median"], "p10": f["words_p10"], "p90": f["words_p90"]},
            "verifier": None if f["verifier_judged"] == 0 else
            {"judged": f["verifier_judged"], "accepted": f["verifier_accepted"],
             "rate": _rate(f["verifier_accepted"], f["verifier_judged"])},
            "relevance": relevance.get(key),
            "judge": judge.get(key),
        }
    return out


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _relevance_means(rows, keys: list[str]) -> dict:
    """(type, model) -> {gate: {"answers", "mean"}} of the `relevance` column's values per `relevance_gate`;
    {} without that column."""
    import polars as pl

    if "relevance" not in rows.columns:
        return {}
    gate = (pl.col("relevance_gate").cast(pl.Utf8) if "relevance_gate" in rows.columns else pl.lit(None, pl.Utf8))
    score = pl.col("relevance").cast(pl.Float64, strict=False)
    means = (rows.filter(score.is_not_null()).with_columns(gate=gate.fill_null("unrecorded"))
             .group_by(*keys, "gate").agg(answers=pl.len(), mean=score.mean()).sort(*keys, "gate"))
    out: dict = {}
    for t, m, g, n, v in means.iter_rows():
        out.setdefault((t, m), {})[g] = {"answers": n, "mean": round(v, 4)}
    return out


def _judge_means(rows, keys: list[str]) -> dict:
    """(type, model) -> {"scored", "mean": {criterion: mean}} of the `judge` column's scores (JSON:
    {"model", "scores": {criterion: 1-5}} or {"model", "error"}); {} without that column or scores."""
    import polars as pl

    if "judge" not in rows.columns:
        return {}
    judged = rows.filter(pl.col("judge").is_not_null())
    if not len(judged):
        return {}
    decoded = judged["judge"].cast(pl.Utf8).str.json_decode(infer_schema_length=None)  # criteria: the data's
    if "scores" not in [f.name for f in decoded.dtype.fields]:   # every judgement an error
        return {}
    scores = decoded.struct.field("scores")
    criteria = [f.name for f in scores.dtype.fields]
    scored = pl.concat([judged.select(keys), scores.struct.unnest().select(pl.all().name.prefix("score:"))],
                       how="horizontal").filter(pl.Series(scores.is_not_null()))
    means = scored.group_by(keys).agg(pl.len(), *[pl.col(f"score:{c}").mean() for c in criteria])
    return {(r["type"], r["model"]): {"scored": r["len"], "mean": {c: round(r[f"score:{c}"], 4) for c in criteria}}
            for r in means.iter_rows(named=True)}


def last_run_items(ledger) -> set[str]:
    """The item ids of the staging's last generate."""
    return set((ledger.get_meta("current_items") or "").split(",")) - {""}


def stamp() -> str:
    """A UTC time stamp for names (backups, sessions), to the microsecond."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
