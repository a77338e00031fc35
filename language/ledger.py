"""Crash-safe staging: a SQLite ledger of items and attempts, accepted samples in Parquet shards.

The ledger (WAL journal) is the journal of record: an item is finished once its row is committed,
and a rerun never calls a server for a finished item.  Commits are grouped (every COMMIT_EVERY_S or
COMMIT_EVERY results) so the ledger keeps up with fast servers; a SIGKILL loses at most that window
of answers, which the rerun asks again.  Within the window the rows wait in memory and go to SQLite
in one executemany per table just before the COMMIT (and before any read of the ledger): they were
not durable before the COMMIT either,
and one statement per table costs far less than one per row.  Accepted samples are copied into Parquet shards (written
atomically) as the run goes; on open, shards on disk that the ledger does not know yet are adopted,
so the two can never disagree after a crash.  No pickle anywhere: SQLite, Parquet and JSON.
"""

from __future__ import annotations

import dataclasses
import operator
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from datasafe import atomic_path, remove_stale_temps

COMMIT_EVERY_S = 0.2
COMMIT_EVERY = 256
SHARD_ROWS = 500
SAMPLE_COLUMNS = ("item_id", "prompt_id", "type", "prompt", "response", "model", "model_type", "backend",
                  "session_id", "timestamp", "generation_batch", "term", "category", "seed", "temperature",
                  "max_tokens", "finish_reason", "prompt_tokens", "completion_tokens", "source_sample_id", "label",
                  "structured", "judge")
# columns added after the first release of the ledger: ALTER TABLE adds them to an older ledger on open
ADDED_COLUMNS = {"results": {"source_sample_id": "TEXT", "label": "TEXT", "structured": "TEXT",
                             "judge": "TEXT", "relevance": "REAL", "relevance_gate": "TEXT"},
                 "attempts": {"prompt_tokens": "INTEGER", "completion_tokens": "INTEGER",
                              "tokens_estimated": "INTEGER", "purpose": "TEXT"}}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    item_id TEXT PRIMARY KEY, prompt_id TEXT NOT NULL, type TEXT NOT NULL, status TEXT NOT NULL,
    reason TEXT, prompt TEXT NOT NULL, response TEXT, model TEXT, model_type TEXT, backend TEXT,
    session_id TEXT, timestamp TEXT, generation_batch INTEGER, term TEXT, category TEXT, seed INTEGER,
    temperature REAL, max_tokens INTEGER, finish_reason TEXT, prompt_tokens INTEGER,
    completion_tokens INTEGER, attempts INTEGER NOT NULL, shard TEXT, source_sample_id TEXT, label TEXT,
    structured TEXT, judge TEXT, relevance REAL, relevance_gate TEXT);
CREATE INDEX IF NOT EXISTS results_status ON results (status);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    backend TEXT, endpoint TEXT, model TEXT, outcome TEXT NOT NULL, reason TEXT, http_status INTEGER,
    latency_s REAL, timestamp TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER,
    tokens_estimated INTEGER, purpose TEXT);
"""
# A ledger from before the attempts had token counts: its answered calls take the counts of the result
# they produced (one answered call per finished item), its failed calls none.
_BACKFILL_TOKENS = """
UPDATE attempts SET
    prompt_tokens = coalesce((SELECT r.prompt_tokens FROM results r WHERE r.item_id = attempts.item_id
                              AND r.model IS attempts.model AND attempts.outcome = 'ok'), 0),
    completion_tokens = coalesce((SELECT r.completion_tokens FROM results r WHERE r.item_id = attempts.item_id
                                  AND r.model IS attempts.model AND attempts.outcome = 'ok'), 0),
    tokens_estimated = 0
WHERE prompt_tokens IS NULL"""


@dataclass(frozen=True)
class Result:
    """The final state of one item."""

    item_id: str
    prompt_id: str
    type: str
    status: str               # accepted | rejected | failed
    reason: str | None
    prompt: str
    response: str | None
    model: str | None
    model_type: str | None
    backend: str | None
    session_id: str
    timestamp: str
    generation_batch: int
    term: str
    category: str
    seed: int
    temperature: float
    max_tokens: int
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    source_sample_id: str | None = None
    label: str | None = None
    structured: str | None = None  # a structured answer as JSON (its explanation is the response)
    judge: str | None = None       # the judge's scores (or its failure) as JSON (language/judge.py); None: not judged
    relevance: float | None = None  # the relevance gate's score of a free-text answer (language/relevance.py
                                    # `assess`: lexical share of the term named, or embedding cosine); None: not measured
    relevance_gate: str | None = None  # the gate that gave `relevance` ("lexical", "embedding"): the scores
                                       # of two gates are not on one scale


class Ledger:
    def __init__(self, staging_dir: Path):
        self.dir = Path(staging_dir)
        self.shard_dir = self.dir / "shards"
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.dir / "ledger.sqlite", isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._migrate()
        self._pending = 0
        self._last_commit = time.monotonic()
        self._in_tx = False
        self._attempt_rows: list[tuple] = []   # written at the next commit (or read), in this order
        self._result_rows: list[tuple] = []
        self._adopt_shards()

    def _migrate(self) -> None:
        """Bring a ledger written by an older version up to this schema, in one transaction."""
        missing = []
        for table, columns in ADDED_COLUMNS.items():
            have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            missing += [(table, c, kind) for c, kind in columns.items() if c not in have]
        if not missing:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for table, column, kind in missing:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            self.db.execute(_BACKFILL_TOKENS)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._begin()
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ writes
    def _begin(self) -> None:
        if not self._in_tx:
            self.db.execute("BEGIN")
            self._in_tx = True

    def record_attempt(self, item_id: str, attempt: int, *, backend: str, endpoint: str, model: str,
                       outcome: str, reason: str | None, http_status: int | None, latency_s: float,
                       prompt_tokens: int = 0, completion_tokens: int = 0, tokens_estimated: bool = False,
                       purpose: str = "answer") -> None:
        """One call for an item (timestamped now) with the tokens it used, written with the next commit;
        `purpose`: "answer" (asking for the item's answer) or "judge" (the judge model scoring it; an older
        ledger's rows have none: answers)."""
        self._attempt_rows.append((item_id, attempt, backend, endpoint, model, outcome, reason, http_status,
                                   latency_s, _now(), prompt_tokens, completion_tokens, int(tokens_estimated),
                                   purpose))
        self._maybe_commit()

    def record_result(self, r: Result) -> None:
        """An item's final state, written with the next commit: the item is finished once that commits."""
        self._result_rows.append(_result_row(r))
        self._pending += 1
        self._maybe_commit()

    def _maybe_commit(self) -> None:
        if self._pending >= COMMIT_EVERY or time.monotonic() - self._last_commit >= COMMIT_EVERY_S:
            self.commit()

    def _write_rows(self) -> None:
        """Hand the rows recorded since the last commit to SQLite (in the open transaction).

        Attempts before results, each table in recording order: the same rows, ids and rowids as
        writing each row when it was recorded."""
        if not (self._attempt_rows or self._result_rows):
            return
        self._begin()
        if self._attempt_rows:
            self.db.executemany(_INSERT_ATTEMPT, self._attempt_rows)
            self._attempt_rows.clear()
        if self._result_rows:
            self.db.executemany(_INSERT_RESULT, self._result_rows)
            self._result_rows.clear()

    def commit(self) -> None:
        self._write_rows()
        if self._in_tx:
            self.db.execute("COMMIT")
            self._in_tx = False
        self._pending = 0
        self._last_commit = time.monotonic()

    def forget(self, statuses: tuple[str, ...]) -> int:
        """Remove results with these statuses (retry-failed): their items become pending again."""
        self._write_rows()
        self._begin()
        marks = ",".join("?" * len(statuses))
        n = self.db.execute(f"DELETE FROM results WHERE status IN ({marks})", statuses).rowcount
        self.commit()
        return n

    # ------------------------------------------------------------------ shards
    def flush_shards(self, force: bool = False) -> int:
        """Copy accepted results not yet in a shard into new Parquet shards; returns rows written."""
        self.commit()
        cols = ", ".join(SAMPLE_COLUMNS)
        rows = self.db.execute(f"SELECT {cols} FROM results WHERE status = 'accepted' AND shard IS NULL "
                               "ORDER BY rowid").fetchall()
        if not rows or (len(rows) < SHARD_ROWS and not force):
            return 0
        written = 0
        remove_stale_temps(self.shard_dir, "part-*.parquet")  # left by a run that was killed
        for start in range(0, len(rows), SHARD_ROWS):
            chunk = rows[start:start + SHARD_ROWS]
            frame = pl.DataFrame(chunk, schema=_SHARD_SCHEMA, orient="row")
            name = f"part-{self._next_shard():05d}.parquet"
            with atomic_path(self.shard_dir / name) as tmp:
                frame.write_parquet(tmp, compression="zstd")
            self._mark_shard(name, [r[0] for r in chunk])
            written += len(chunk)
        return written

    def _next_shard(self) -> int:
        existing = [int(p.stem.split("-")[1]) for p in self.shard_dir.glob("part-*.parquet")]
        return max(existing, default=-1) + 1

    def _mark_shard(self, name: str, ids: list[str]) -> None:
        self._begin()
        self.db.executemany("UPDATE results SET shard = ? WHERE item_id = ?", [(name, i) for i in ids])
        self.commit()

    def _adopt_shards(self) -> None:
        """Shards written before a crash whose ledger update was lost: record them now."""
        known = {r[0] for r in self.db.execute("SELECT DISTINCT shard FROM results WHERE shard IS NOT NULL")}
        for path in sorted(self.shard_dir.glob("part-*.parquet")):
            if path.name not in known:
                ids = pl.read_parquet(path, columns=["item_id"])["item_id"].to_list()
                self._mark_shard(path.name, ids)

    def damaged_shards(self) -> list[str]:
        """Shards that cannot be read back whole (truncated, corrupted)."""
        bad = []
        for path in sorted(self.shard_dir.glob("part-*.parquet")):
            try:
                pl.read_parquet(path)
            except Exception:  # any decoding failure means the file is damaged
                bad.append(path.name)
        return bad

    def rebuild_shards(self, names: list[str]) -> int:
        """Rewrite damaged shards from the ledger, which holds every accepted answer."""
        for name in names:
            (self.shard_dir / name).unlink(missing_ok=True)
        self._begin()
        n = sum(self.db.execute("UPDATE results SET shard = NULL WHERE shard = ?", (name,)).rowcount
                for name in names)
        self.commit()
        self.flush_shards(force=True)
        return n

    # ------------------------------------------------------------------ reads
    def finished_ids(self) -> set[str]:
        self.commit()
        return {r[0] for r in self.db.execute("SELECT item_id FROM results")}

    def accepted_texts(self) -> list[tuple[str, str]]:
        self._write_rows()
        return self.db.execute("SELECT item_id, response FROM results WHERE status = 'accepted'").fetchall()

    def accepted_free_texts(self) -> list[tuple[str, str]]:
        """(item_id, response) of the accepted answers that are free text (not grounded: no label)."""
        self._write_rows()
        return self.db.execute("SELECT item_id, response FROM results WHERE status = 'accepted' "
                               "AND label IS NULL").fetchall()

    def results_frame(self) -> pl.DataFrame:
        self.commit()
        cur = self.db.execute("SELECT * FROM results ORDER BY rowid")
        names = [d[0] for d in cur.description]
        return pl.DataFrame(cur.fetchall(), schema=names, orient="row", infer_schema_length=None)

    def attempts_frame(self) -> pl.DataFrame:
        self._write_rows()
        cur = self.db.execute("SELECT * FROM attempts ORDER BY id")
        names = [d[0] for d in cur.description]
        return pl.DataFrame(cur.fetchall(), schema=names, orient="row", infer_schema_length=None)

    def token_totals(self) -> pl.DataFrame:
        """Per backend and model: the calls made, the tokens they used and how many of those calls'
        counts were estimated (their server did not say)."""
        self._write_rows()
        cur = self.db.execute(
            "SELECT backend, model, count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
            "coalesce(sum(tokens_estimated), 0) FROM attempts GROUP BY backend, model ORDER BY backend, model")
        return pl.DataFrame(cur.fetchall(), orient="row", schema={
            "backend": pl.Utf8, "model": pl.Utf8, "calls": pl.Int64, "prompt_tokens": pl.Int64,
            "completion_tokens": pl.Int64, "estimated_calls": pl.Int64})

    def samples(self) -> pl.DataFrame:
        """Accepted samples from the Parquet shards (each item once)."""
        self.flush_shards(force=True)
        paths = sorted(self.shard_dir.glob("part-*.parquet"))
        if not paths:
            return pl.DataFrame(schema=_SHARD_SCHEMA)
        # a shard written before a column was added lacks it: null there
        frames = [pl.read_parquet(p) for p in paths]
        frames = [f.with_columns([pl.lit(None, dtype).alias(c) for c,
                                  dtype in _SHARD_SCHEMA.items() if c not in f.columns])
                  .select(list(_SHARD_SCHEMA)) for f in frames]
        return pl.concat(frames).unique("item_id", keep="first", maintain_order=True)

    def close(self) -> None:
        self.commit()
        self.db.close()


_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(Result))
_INSERT_RESULT = (f"INSERT OR REPLACE INTO results ({', '.join(_RESULT_FIELDS)}) "
                  f"VALUES ({', '.join('?' * len(_RESULT_FIELDS))})")
_INSERT_ATTEMPT = ("INSERT INTO attempts (item_id, attempt, backend, endpoint, model, outcome, reason, "
                   "http_status, latency_s, timestamp, prompt_tokens, completion_tokens, tokens_estimated, purpose) "
                   "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_result_row = operator.attrgetter(*_RESULT_FIELDS)   # a Result's column values, in _RESULT_FIELDS order

_SHARD_SCHEMA = {
    "item_id": pl.Utf8, "prompt_id": pl.Utf8, "type": pl.Utf8, "prompt": pl.Utf8, "response": pl.Utf8,
    "model": pl.Utf8, "model_type": pl.Utf8, "backend": pl.Utf8, "session_id": pl.Utf8, "timestamp": pl.Utf8,
    "generation_batch": pl.Int64, "term": pl.Utf8, "category": pl.Utf8, "seed": pl.Int64,
    "temperature": pl.Float64, "max_tokens": pl.Int64, "finish_reason": pl.Utf8, "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64, "source_sample_id": pl.Utf8, "label": pl.Utf8, "structured": pl.Utf8,
    "judge": pl.Utf8,
}


def _now() -> str:
    """The current UTC time to the second (ISO 8601), formatted once per second: the same string
    time.strftime gives, at a dictionary lookup's cost on every other call."""
    second = int(time.time())
    text = _NOW_CACHE.get(second)
    if text is None:
        text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        _NOW_CACHE.clear()
        _NOW_CACHE[second] = text
    return text


_NOW_CACHE: dict[int, str] = {}
