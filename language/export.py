"""Exports: training/language_dataset.json (the seed schema) and a chat-format JSONL.

A structured answer (grounded prompts, JSON against verify.ANSWER_SCHEMA) is exported as its object
(`structured`) beside its explanation text (`response`); the chat JSONL's assistant message is that
text, or with `chat_structured` the JSON itself.  A judged answer (language/judge.py) carries the
judge's object (`judge`: its model and scores, or why it failed).

Both written atomically; the previous file is kept as a timestamped backup (the last three).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl

from datasafe import atomic_path, backup_file, remove_stale_temps
from datasafe.integrity import check_json_dataset

from .domain import SAMPLE_TYPES
from .errors import LanguageError

DATASET_NAME = "language_dataset.json"
CHAT_NAME = "language_dataset.chat.jsonl"
# every file the exports write, back up or keep when restoring (fnmatch patterns)
OWNED_FILES = (DATASET_NAME, CHAT_NAME, "language_dataset.*.bak.json", "language_dataset.chat.*.bak.jsonl",
               "language_dataset.*.damaged.json")
SAMPLE_FIELDS = ("type", "prompt", "response", "model", "model_type", "session_id", "timestamp",
                 "generation_batch", "term", "category", "source_sample_id", "label")
JSON_FIELDS = ("structured", "judge")   # JSON text in the ledger, objects in the dataset (left out when null)


def metadata(samples: pl.DataFrame, *, generated_at: str, session_id: str, config_hash: str,
             new_samples: int, model_pool: list[str], swap_interval: int, questions_processed: int,
             grounding: dict | None = None, usage: dict | None = None, quality: dict | None = None) -> dict:
    types = dict(zip(*samples.group_by("type").len().sort("type").to_dict(as_series=False).values())) \
        if len(samples) else {}
    models = dict(zip(*samples.group_by("model").len().sort("model").to_dict(as_series=False).values())) \
        if len(samples) else {}
    return {
        "generated_at": generated_at,
        "generator": "monitoring-datafactory language",
        "session_id": session_id,
        "total_samples": len(samples),
        "new_samples_added": new_samples,
        "config_hash": config_hash,
        "sample_distribution": {t: int(types.get(t, 0)) for t in SAMPLE_TYPES},
        "model_distribution": {m: int(n) for m, n in models.items()},
        "rotation_info": {"total_models": len(model_pool), "model_pool": model_pool,
                          "swap_interval": swap_interval, "questions_processed": questions_processed},
        "grounding_agreement": grounding or {},
        "usage": usage or {},   # tokens and cost per model and in total (language/usage.py)
        "quality": quality or {},   # per type and model, as `python -m language report` (pipeline.quality_figures)
    }


def grounding_table(results: pl.DataFrame) -> dict:
    """Per model: grounded answers checked against their label, and how many agreed."""
    if not len(results) or "label" not in results.columns:
        return {}
    graded = results.filter(pl.col("label").is_not_null() & pl.col("response").is_not_null()
                            & (pl.col("status").is_in(["accepted"])
                               | pl.col("reason").cast(pl.Utf8).str.starts_with("grounding:")))
    out = {}
    for model, group in graded.group_by("model", maintain_order=True):
        agreed = int((group["status"] == "accepted").sum())
        out[model[0]] = {"checked": len(group), "agreed": agreed, "rate": round(agreed / len(group), 4)}
    return out


def select_samples(samples: pl.DataFrame, *, types: list[str] | None = None,
                   items: set[str] | None = None) -> pl.DataFrame:
    """The accepted samples an export holds: all of them, or those of the given types and/or item ids."""
    if types is not None and len(samples):
        samples = samples.filter(pl.col("type").is_in(types))
    if items is not None and len(samples):
        samples = samples.filter(pl.col("item_id").is_in(sorted(items)))
    return samples


def _sample_row(row: dict) -> dict:
    """A dataset sample: SAMPLE_FIELDS, and a structured answer's object and the judge's when it has them."""
    for key in JSON_FIELDS:
        value = row.pop(key)
        if value is not None:
            row[key] = orjson.loads(value)
    return row


def samples_in(path: Path) -> int | None:
    """How many samples the language dataset at `path` holds; None when it is missing or damaged."""
    problem, document = check_json_dataset(path, "samples", "language dataset")
    return None if problem else len(document["samples"])


def check_language_dataset(path: Path) -> str | None:
    """None when `path` is a complete language dataset, else what is wrong."""
    return check_json_dataset(path, "samples", "language dataset")[0]


def write_exports(output_dir: Path, meta: dict, samples: pl.DataFrame, system_prompt: str, *,
                  allow_fewer: bool = False, chat_structured: bool = False) -> list[Path]:
    """Write the dataset JSON and the chat JSONL; return the backups made (if any).

    An export that would hold fewer samples than the intact dataset it replaces raises LanguageError
    and writes nothing, unless `allow_fewer`: accepted answers are never dropped by accident."""
    before = samples_in(output_dir / DATASET_NAME)
    if before is not None and len(samples) < before and not allow_fewer:
        raise LanguageError(f"export: {output_dir / DATASET_NAME} holds {before} samples and this export would "
                            f"hold {len(samples)}; nothing was written (--allow-fewer replaces it anyway, "
                            "keeping the old file as a backup)")
    rows = [_sample_row(r) for r in samples.select(*SAMPLE_FIELDS, *JSON_FIELDS).to_dicts()] if len(samples) else []
    dataset = orjson.dumps({"metadata": meta, "samples": rows}, option=orjson.OPT_INDENT_2)
    chat = b"".join(orjson.dumps({
        "messages": [{"role": "system", "content": system_prompt}, {"role": "user", "content": r["prompt"]},
                     {"role": "assistant", "content": orjson.dumps(r["structured"]).decode()
                      if chat_structured and "structured" in r else r["response"]}],
        "type": r["type"], "model": r["model"], "term": r["term"],
        **({"source_sample_id": r["source_sample_id"], "label": r["label"]} if r["source_sample_id"] else {})})
        + b"\n" for r in rows)
    remove_stale_temps(output_dir, "language_dataset*")  # left by an export that was killed
    backups = []
    for name, data in ((DATASET_NAME, dataset), (CHAT_NAME, chat)):
        target = output_dir / name
        backup = backup_file(target)
        if backup:
            backups.append(backup)
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    return backups
