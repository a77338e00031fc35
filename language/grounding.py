"""Grounded metrics explanations: prompts built from simulated samples, answers checked against labels.

The simulator knows the truth of every sample (its kind); the prompt shows the snapshot the way
operators see it (a table, a Splunk search result, a monitoring alert); the answer is checked by
language/verify.py against that truth and the sample's own data: it must assert the labelled kind
(or, for a normal sample, say it is healthy and name no incident), name a metric that moved in this
sample (measured on the snapshot and its window, see verify.py) and none that did not, and mention
no other kind unless the label's kind module makes it a consequence.  The names of each kind come
from its module (simulator/anomalies), those of each metric from simulator/catalogue.py, those of
a healthy host from data_config/anomaly_vocabulary.yaml, all matched as whole words with negation scoped to its
clause; a structured (JSON) answer is checked against verify.ANSWER_SCHEMA.

The samples come from the simulator's JSON dataset (the snapshot only) or from its staging folder
(`training/staging/`, checked against its manifest first): then each prompt also shows the host's
recent window, WINDOW_STEPS points ending at the sample (the span of a dataset sample's `context` at
the default 5 minutes) read from the traces parts with one filtered scan and a join, for the
WINDOW_METRICS metrics the snapshot moved most against the points before it (`moved_most`: chosen
from the data, the same way for normal and anomalous samples and for both sources, so the choice of
columns does not give the label away). A dataset sample's prompt shows the same window from its own
`context`. When the run staged its logs (`python -m simulator generate
--logs`), the prompt also shows an excerpt of the host's log lines over that window, read through the
staging reader (`StagedRun.log_excerpts`): at most `simulator.logs.EXCERPT_LINES` lines, chosen the
same way for every sample by the function that chooses the dataset's excerpts
(`simulator.logs.log_excerpts`: the latest line of each template first, the most severe, then the
rarest in the window; never by the lines' event ids), shown in time order. A dataset sample of a run
with logs carries its own excerpt (`logs`), which its prompt shows the same way.

The samples are chosen balanced over the labels (`balanced_rows`): by default half normal (the
`normal_share`), the rest spread evenly over the anomaly kinds present; a label with too few
samples leaves its share to the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import polars as pl

from datasafe.yamlcheck import Validator, read_yaml
from simulator.catalogue import UNIT_SUFFIX

from .domain import DATA_DIR, MAX_FILE_BYTES, DomainContent
from .errors import ConfigError, LanguageError
from .items import AUDIENCE_LABELS, WorkItem, _hash
from .verify import (Sample, looks_structured, moved_metrics, related_kinds, sample_from_dict,
                     verify_structured, verify_text)

VOCABULARY_FILE = "anomaly_vocabulary.yaml"
FORMS = ("table", "splunk", "alert")
SOURCE_STREAM = 12  # SeedSequence spawn key of the sample choice
WINDOW_STEPS = 12   # points of the window shown with a sample, the sample's last: one hour at 5 minutes
WINDOW_METRICS = 3  # metrics in the window: those the snapshot moved most against the points before it
NORMAL_SHARE = 0.5  # default share of normal samples among the grounded prompts
# grounded answers are JSON (verify.ANSWER_SCHEMA), asked for through each backend's structured output;
# the prompt says what each field holds, the schema constrains its form
ANSWER_FORMAT = ("Reply with one JSON object: verdict (\"healthy\" or the anomaly kind), anomalous_metrics (the "
                 "metrics that moved), evidence (each with metric, value or values, and time), onset (the time "
                 "it started, or null), severity (none, low, medium, high or critical), check_first (what to "
                 "check first) and explanation (the answer in plain words).")
QUESTIONS = (
    "What is going on with this host, and what should be checked first?",
    "Is this host healthy? If not, name the problem, the metrics that show it and the first checks.",
    "Explain what these readings mean for the service and whether anyone needs to act.",
)


@dataclass(frozen=True)
class Vocabulary:
    kinds: dict[str, tuple[str, ...]]
    metrics: dict[str, tuple[str, ...]]
    healthy: tuple[str, ...]
    related: dict[str, tuple[str, ...]]  # kind -> the kinds it may drive


def load_vocabulary(data_dir: Path | None = None) -> Vocabulary:
    """The names of each kind and its consequences (from the kind modules), of each metric (from the
    catalogue) and of a healthy host (from anomaly_vocabulary.yaml in `data_dir`)."""
    from simulator.anomalies import ANOMALY_KINDS
    from simulator.catalogue import METRIC_WORDS

    d = Path(data_dir) if data_dir is not None else DATA_DIR
    source = VOCABULARY_FILE if d == DATA_DIR else str(d / VOCABULARY_FILE)
    v = Validator(source, ConfigError)
    root = v.mapping(read_yaml(d / VOCABULARY_FILE, source, ConfigError, MAX_FILE_BYTES), "",
                     required=("healthy",), optional=("kinds", "metrics"))
    if "kinds" in root:
        v.fail("kinds", "the names of each anomaly kind are in its module (simulator/anomalies/<kind>.py: NAMES)")
    if "metrics" in root:
        v.fail("metrics", "the names of each metric are in simulator/catalogue.py (METRIC_TABLE)")
    healthy = root["healthy"]
    if not isinstance(healthy, list) or not healthy:
        v.fail("healthy", "expected a non-empty list of phrases")
    return Vocabulary({name: tuple(p.lower() for p in kind.names) for name, kind in ANOMALY_KINDS.items()},
                      {m: tuple(p.lower() for p in words) for m, words in METRIC_WORDS.items()},
                      tuple(v.string(p, f"healthy[{i}]").lower() for i, p in enumerate(healthy)), related_kinds())


def grounding_check(text: str | dict, label: str, moved: tuple[str, ...], vocab: Vocabulary) -> str | None:
    """None when the answer agrees with the label and the metrics that moved, else the reasons.

    A structured answer (JSON text, or its parsed object) is checked against the schema, the label
    and `moved`; its cited values need the sample's data (verify.verify_structured with the Sample)."""
    if not isinstance(text, str) or looks_structured(text):
        result = verify_structured(text, Sample(label, {}), vocab, moved=moved)
    else:
        result = verify_text(text, label, moved, vocab)
    return None if result.accepted else "grounding: " + "; ".join(result.reasons)


def _render(form: str, sample: dict, rng: np.random.Generator) -> str:
    metrics = sample["metrics"]
    host = f"cn{int(rng.integers(1, 400)):03d}"  # drawn for every sample: the stream stays aligned
    if isinstance(sample.get("host"), int):  # staged samples know their host's index
        host = f"cn{sample['host']:05d}"  # as its logs, cases and the dataset's samples name it
    elif isinstance(sample.get("host"), dict):  # a dataset's samples carry the host's facts
        host = sample["host"]["name"]
    window = sample.get("window")
    minutes = f"{sample.get('interval_min', 5):g}"
    if form == "table":
        rows = "\n".join(f"| {m} | {v}{UNIT_SUFFIX.get(m, '')} |" for m, v in metrics.items())
        text = (f"Host {host}, {minutes}-minute sample at {sample['timestamp']}:\n\n| metric | value |\n|---|---|\n"
                f"{rows}")
        if window:
            names = list(window["metrics"])
            series = "\n".join("| " + " | ".join([t, *(window["metrics"][m][j] for m in names)]) + " |"
                                for j, t in enumerate(window["time"]))
            text += (f"\n\n{_window_title(window, minutes)}, oldest first; the last row is the sample above:\n\n"
                     f"| time | {' | '.join(names)} |\n|---|{'---|' * len(names)}\n{series}")
        return text + _log_excerpt(sample, host)
    if form == "splunk":
        fields = " ".join(f"{m}={v}" for m, v in metrics.items())
        text = (f"Splunk search: index=os_metrics host={host} earliest=-{minutes}m | stats latest(*) by host\n"
                f"Result: _time=\"{sample['timestamp']}\" host={host} {fields}")
        if window:
            names = list(window["metrics"])
            cells = [["_time", *names]] + [[t, *(window["metrics"][m][j] for m in names)]
                                           for j, t in enumerate(window["time"])]
            widths = [max(len(row[c]) for row in cells) for c in range(len(cells[0]))]
            table = "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)
            text += (f"\n\nSplunk search: index=os_metrics host={host} earliest=-{window['span_min']:g}m "
                     f"| timechart span={minutes}m " + " ".join(f"latest({m}) AS {m}" for m in names)
                     + f"\n{table}")
        return text + _log_excerpt(sample, host, splunk=True)
    worst = max(metrics, key=lambda m: float(metrics[m]) if m.endswith(("usage", "time")) else 0.0)
    lines = "\n".join(f"  {m}: {v}{UNIT_SUFFIX.get(m, '')}" for m, v in metrics.items())
    text = (f"[ALERT] monitoring: host {host} at {sample['timestamp']}: review {worst} "
            f"({metrics[worst]}{UNIT_SUFFIX.get(worst, '')})\nCurrent readings:\n{lines}")
    if window:
        trend = "\n".join(f"  {m}{' (' + UNIT_SUFFIX.get(m, '').strip() + ')' if UNIT_SUFFIX.get(m, '') else ''}: {', '.join(vs)}"
                           for m, vs in window["metrics"].items())
        text += f"\n{_window_title(window, minutes)}, oldest first, ending at the current reading:\n{trend}"
    return text + _log_excerpt(sample, host)


def _log_excerpt(sample: dict, host: str, splunk: bool = False) -> str:
    """The sample's log excerpt (staged runs with logs) as the prompt shows it; empty without one."""
    logs = sample.get("logs")
    if not logs:
        return ""
    lines = "\n".join(logs["lines"])
    if splunk:
        return (f"\n\nSplunk search: index=os_logs host={host} earliest=-{logs['span_min']:g}m "
                f"| dedup template | sort -severity | head {len(logs['lines'])} | sort _time\n{lines}")
    return (f"\n\nLog lines of {host} over the same {logs['span_min']:g} minutes ({len(logs['lines'])} of "
            f"{logs['total']:,}; the most severe and least frequent kinds, in time order):\n{lines}")


def _window_title(window: dict, minutes: str) -> str:
    return f"Trend over the last {window['span_min']:g} minutes ({minutes}-minute points)"


def read_metric_samples(path: Path) -> list[dict]:
    try:
        data = orjson.loads(Path(path).read_bytes())
        samples = data["training_samples"]
        assert isinstance(samples, list)
    except FileNotFoundError:
        raise LanguageError(f"--from-metrics: {path} not found") from None
    except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
        raise LanguageError(f"--from-metrics: {path} is not a metrics dataset (training_samples missing "
                            "or not JSON)") from None
    for i, s in enumerate(samples):
        if not isinstance(s, dict) or not {"id", "metrics", "status"} <= set(s):
            raise LanguageError(f"--from-metrics: {path}: training_samples[{i}] lacks id, metrics or status")
    return samples


def with_context_windows(samples: list[dict], steps: int = WINDOW_STEPS) -> list[dict]:
    """Dataset samples, each with the window its own `context` carries (its last `steps` readings, the
    snapshot last), for the WINDOW_METRICS metrics the snapshot moved most against the readings
    before it (`moved_most` over all the samples at once, as for staged samples); a sample without
    context unchanged."""
    shapes = {}   # p_index -> (the metrics with context, the points shown)
    for p_index, sample in enumerate(samples):
        context = sample.get("context")
        if not isinstance(context, dict) or steps <= 0:
            continue
        names = [m for m in sample["metrics"] if isinstance(context.get(m), list) and context[m]]
        if names:
            shapes[p_index] = names, min(steps, min(len(context[m]) for m in names))
    if not shapes:
        return samples
    metrics = list(dict.fromkeys(m for names, _ in shapes.values() for m in names))
    sizes = [len(names) * n for names, n in shapes.values()]
    values = pl.DataFrame({
        "p_index": np.repeat(list(shapes), sizes),
        "metric": [m for names, n in shapes.values() for m in names for _ in range(n)],
        "last": np.concatenate([np.tile(np.arange(n) == n - 1, len(names)) for names, n in shapes.values()]),
        "v": pl.Series([v for p, (names, n) in shapes.items() for m in names
                        for v in samples[p]["context"][m][-n:]], dtype=pl.Float64)})
    shown = moved_most(values, metrics)
    return [_with_window(sample, shown[p], shapes[p][1]) if p in shapes else sample
            for p, sample in enumerate(samples)]


def _with_window(sample: dict, shown: list[str], n: int) -> dict:
    """The sample with its window: the last `n` readings of the metrics `shown`, and their times."""
    context = sample["context"]
    interval_min = float(sample.get("interval_min", 5))
    end = datetime.fromisoformat(str(sample["timestamp"]).replace("Z", "+00:00"))
    times = [(end - timedelta(minutes=interval_min * (n - 1 - j))).strftime("%H:%M") for j in range(n)]
    return {**sample, "window": {"time": times, "span_min": (n - 1) * interval_min,
                                 "metrics": {m: ["-" if v is None else str(v) for v in context[m][-n:]]
                                             for m in shown}}}


def moved_most(values: pl.DataFrame, metrics: list[str]) -> dict[int, list[str]]:
    """Per p_index, the WINDOW_METRICS metrics whose last reading lies furthest from the readings before it,
    in units of their spread (ties by the order of `metrics`). `values` holds p_index, metric, v (a
    Float64 reading, null where missing) and last (the window's last reading, the snapshot)."""
    prev = pl.col("v").filter(~pl.col("last"))
    last = pl.col("v").filter(pl.col("last")).first()
    score = ((last - prev.mean()).abs() / (prev.std(ddof=0) + 0.05 * prev.mean().abs() + 0.01)).fill_null(0.0)
    top = (values.group_by("p_index", "metric").agg(score.alias("score"))
           .with_columns(pl.col("metric").replace_strict(metrics, list(range(len(metrics)))).alias("rank"))
           .sort(["p_index", "score", "rank"], descending=[False, True, False])
           .group_by("p_index", maintain_order=True).agg(pl.col("metric").head(WINDOW_METRICS)))
    return dict(zip(top["p_index"].to_list(), top["metric"].to_list()))


def with_log_excerpt(sample: dict) -> dict:
    """A dataset sample whose `logs` (a run with --logs: {total, lines} of its context window, see
    simulator.logs.sample_log_excerpts) the prompt shows as a staged sample's: a line per log line
    (time, source, severity, message), the window's line count and its span (the context's points);
    the sample without `logs` when it has no line."""
    from simulator.logs import excerpt_line_text

    logs = sample.get("logs")
    if logs is None:
        return sample
    try:
        lines = [excerpt_line_text(line) for line in logs["lines"]]
        total = int(logs["total"])
    except (TypeError, KeyError, ValueError):
        raise LanguageError(f"--from-metrics: sample {sample.get('id')}: logs is not {{total, lines: [{{time, source, "
                            "severity, message}]}") from None
    if not lines:
        return {k: v for k, v in sample.items() if k != "logs"}
    points = max((len(v) for v in (sample.get("context") or {}).values() if isinstance(v, list)), default=1)
    return {**sample, "logs": {"lines": lines, "total": total,
                               "span_min": points * float(sample.get("interval_min", 5))}}


def staging_folder(path: Path) -> Path | None:
    """The staging folder `path` names (the folder, the output folder holding staging/, or its
    manifest.json), or None when `path` is a JSON dataset."""
    from simulator.staging import StagingError, locate_staging

    try:
        return locate_staging(path)
    except StagingError as exc:
        raise LanguageError(f"--from-metrics: {exc} (give training/metrics_dataset.json or training/staging)") from None


class StagedSamples:
    """The samples of a simulator staging folder, read through `simulator.open_staging` (which checks the
    manifest and every file's checksum first)."""

    SAMPLE_COLUMNS = ("id", "host", "step", "timestamp", "status", "kind")

    def __init__(self, folder: Path):
        from simulator.staging import StagingError, open_staging

        self.folder = Path(folder)
        try:
            self.run = open_staging(self.folder)
        except StagingError as exc:
            raise LanguageError(f"--from-metrics: {exc}") from None
        self.interval_min = self.run.interval_s / 60.0
        schema = self.run.scan("samples").collect_schema()
        missing = [c for c in self.SAMPLE_COLUMNS if c not in schema]
        if missing:
            raise LanguageError(f"--from-metrics: {self.folder / 'samples'} lacks the columns {', '.join(missing)}")
        self.metrics = [m for m in self.run.metrics if m in schema]
        self.n = self.run.scan("samples").select(pl.len()).collect().item()

    def labels(self) -> pl.Series:
        """Every sample's label (its kind, or "normal"), in row order."""
        frame = self.run.scan("samples").select(
            pl.when(pl.col("status").cast(pl.Utf8) == "anomaly")
            .then(pl.col("kind").cast(pl.Utf8).fill_null("normal")).otherwise(pl.lit("normal")).alias("label")
        ).collect()
        return frame["label"]

    def take(self, order: np.ndarray, steps: int = WINDOW_STEPS) -> list[dict]:
        """The samples at rows `order` (in that order), each with its host's window of `steps` points."""
        from simulator.staging import SAMPLE_TIME_FORMAT

        picked = pl.DataFrame({"row": np.asarray(order, np.int64), "p_index": np.arange(len(order), dtype=np.int64)})
        chosen = (self.run.scan("samples").with_row_index("row")
                  .filter(pl.col("row").is_in(picked["row"].implode()))
                  .select("row", *self.SAMPLE_COLUMNS, *self.metrics).collect()
                  .with_columns(pl.col("timestamp").dt.strftime(SAMPLE_TIME_FORMAT))
                  .join(picked, on="row").sort("p_index"))
        snapshot = chosen.select("p_index", *[pl.col(m).cast(pl.Utf8) for m in self.metrics])
        windows = self._windows(chosen, steps) if steps > 0 else {}
        excerpts = self._log_excerpts(chosen, steps) if steps > 0 and self.run.has_logs else {}
        out = []
        for row, values in zip(chosen.select("p_index", *self.SAMPLE_COLUMNS).iter_rows(named=True),
                               snapshot.drop("p_index").iter_rows(named=True)):
            out.append({"id": row["id"], "timestamp": row["timestamp"], "status": row["status"],
                        "anomaly_type": row["kind"], "host": int(row["host"]), "metrics": values,
                        "interval_min": self.interval_min, "window": windows.get(row["p_index"]),
                        "logs": excerpts.get(row["p_index"])})
        return out

    def _log_excerpts(self, chosen: pl.DataFrame, steps: int) -> dict[int, dict]:
        """Per p_index with log lines in its window (`steps` steps, the sample's last): at most
        EXCERPT_LINES of them, as their files hold them, in time order, and the window's line count; chosen by
        the simulator's reader as the dataset's samples choose theirs (`StagedRun.log_excerpts`)."""
        from simulator.staging import StagingError

        try:
            lines = self.run.log_excerpts(chosen.select("host", "step"), before=steps - 1)
        except StagingError as exc:
            raise LanguageError(f"--from-metrics: {exc}") from None
        if lines.is_empty():
            return {}
        picked = (lines.with_columns(chosen["p_index"].gather(lines["point"]).alias("p_index"))
                  .group_by("p_index", maintain_order=True).agg(pl.col("line"), pl.col("total").first()))
        at = dict(zip(chosen["p_index"].to_list(), chosen["step"].to_list()))
        return {row["p_index"]: {"lines": row["line"], "total": row["total"],
                                 "span_min": min(at[row["p_index"]] + 1, steps) * self.interval_min}
                for row in picked.iter_rows(named=True)}

    def _windows(self, chosen: pl.DataFrame, steps: int) -> dict[int, dict]:
        """Per p_index: the times and the chosen metrics' values over the window, the sample's step last."""
        from simulator.staging import StagingError

        try:
            window = (self.run.windows(chosen.select("p_index", "host", "step"), before=steps - 1)
                      .select("p_index", "host", "step", "at", "timestamp", *self.metrics))
        except StagingError as exc:
            raise LanguageError(f"--from-metrics: {exc}") from None
        self._check_windows(chosen, window)
        values = window.unpivot(index=["p_index", "step", "at"], on=self.metrics, variable_name="metric",
                                value_name="v").select("p_index", "metric", pl.col("v").cast(pl.Float64),
                                                       (pl.col("step") == pl.col("at")).alias("last"))
        shown = moved_most(values, self.metrics)
        series = (window.group_by("p_index").agg(pl.col("timestamp").dt.strftime("%H:%M").alias("time"),
                                                 *[pl.col(m).cast(pl.Utf8) for m in self.metrics]))
        out = {}
        for row in series.iter_rows(named=True):
            names = shown[row["p_index"]]
            out[row["p_index"]] = {"time": row["time"], "metrics": {m: row[m] for m in names},
                                   "span_min": (len(row["time"]) - 1) * self.interval_min}
        return out

    def _check_windows(self, chosen: pl.DataFrame, window: pl.DataFrame) -> None:
        """The last point of every window equal to the sample's snapshot."""
        last = window.filter(pl.col("step") == pl.col("at")).join(chosen, on="p_index", suffix="_sample")
        differs = last.filter(pl.any_horizontal([pl.col(m) != pl.col(f"{m}_sample") for m in self.metrics]))
        if len(differs):
            raise LanguageError(f"--from-metrics: {self.folder}: the traces and samples tables disagree at sample "
                                f"{differs['id'][0]} (host {differs['host'][0]}, step {differs['step'][0]})")


def label_quotas(available: np.ndarray, normal: int, count: int, *, normal_share: float,
                 kind_order: np.ndarray) -> np.ndarray:
    """How many samples of each label to take: round(count * normal_share) normal ones (label `normal`),
    the rest spread evenly over the other labels that have samples (the remainder one each, in
    `kind_order`); a label with fewer samples than its share leaves the difference to the others
    (first to the anomaly kinds, then to normal). Never more than `available` per label."""
    quota = np.zeros(len(available), np.int64)
    count = min(int(count), int(available.sum()))
    quota[normal] = min(int(available[normal]), int(round(count * normal_share)))
    kinds = [int(k) for k in kind_order if k != normal and available[k] > 0]
    left = count - quota[normal]
    while left > 0 and kinds:
        each, extra = divmod(left, len(kinds))
        for j, k in enumerate(kinds):  # a few labels, not samples: a loop over kinds
            quota[k] += min(each + (j < extra), available[k] - quota[k])
        left = count - int(quota.sum())
        kinds = [k for k in kinds if quota[k] < available[k]]
    quota[normal] += min(left, int(available[normal] - quota[normal]))
    return quota


def balanced_rows(codes: np.ndarray, normal: int, count: int, *, normal_share: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Rows of `count` samples whose label codes are `codes` (normal = `normal`), balanced per
    label_quotas: in the order of one random permutation, the first rows of each label up to its quota
    (so the same seed picks the same rows, and a larger count keeps nearly all of a smaller one's)."""
    codes = np.asarray(codes, np.int64)
    n_labels = int(max(codes.max(initial=-1), normal)) + 1
    perm = rng.permutation(len(codes))
    permuted = codes[perm]
    available = np.bincount(codes, minlength=n_labels)
    _, first_seen = np.unique(permuted, return_index=True)
    kind_order = permuted[np.sort(first_seen)]  # labels by first appearance in the permutation
    quota = label_quotas(available, normal, count, normal_share=normal_share, kind_order=kind_order)
    by_label = np.argsort(permuted, kind="stable")  # positions grouped per label, in permutation order
    starts = np.concatenate(([0], np.cumsum(available)[:-1]))
    rank = np.empty(len(codes), np.int64)
    rank[by_label] = np.arange(len(codes)) - np.repeat(starts, available)
    return perm[rank < quota[permuted]]


def _label_codes(labels: pl.Series) -> tuple[np.ndarray, int]:
    """(a code per sample, the code of "normal") for sample labels (a kind or "normal")."""
    names = sorted(set(labels.unique().to_list()) | {"normal"})
    codes = labels.replace_strict(names, list(range(len(names))), return_dtype=pl.Int64).to_numpy()
    return codes, names.index("normal")


def metric_sample_items(path: Path, count: int, domain: DomainContent, *, models_per_prompt: int, n_models: int,
                        options: str, seed: int, window_steps: int = WINDOW_STEPS,
                        normal_share: float = NORMAL_SHARE) -> list[WorkItem]:
    """`count` metrics_explanation items from the samples in `path`, balanced over the labels
    (`normal_share` normal, the rest evenly over the anomaly kinds present; see balanced_rows).

    `path` is a metrics dataset JSON or a staging folder; prompts show the snapshot and the host's window of
    `window_steps` points ending at it (from the traces, or from the dataset sample's `context`)."""
    folder = staging_folder(path)
    staged = StagedSamples(folder) if folder is not None else None
    samples = read_metric_samples(path) if staged is None else None
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SOURCE_STREAM,)))
    labels = pl.Series([_label(s) for s in samples], dtype=pl.Utf8) if staged is None else staged.labels()
    codes, normal = _label_codes(labels)
    order = balanced_rows(codes, normal, count, normal_share=normal_share, rng=rng)
    chosen = [with_log_excerpt(sample) for sample in with_context_windows([samples[i] for i in order.tolist()],
                                                                          window_steps)] \
        if staged is None else staged.take(order, window_steps)
    slots = max(1, min(models_per_prompt, n_models))
    items = []
    for p_index, sample in enumerate(chosen):
        label = _label(sample)
        moved = moved_metrics(sample_from_dict(sample, label))  # measured on this sample's data
        persona = domain.personalities[int(rng.integers(len(domain.personalities)))]
        prompt = (f"{_render(FORMS[int(rng.integers(len(FORMS)))], sample, rng)}\n\n"
                  f"{QUESTIONS[int(rng.integers(len(QUESTIONS)))]} Answer for {AUDIENCE_LABELS[persona.audience]}. "
                  f"{persona.description}\n\n{ANSWER_FORMAT}")
        prompt_id = _hash("metrics_explanation", domain.system_prompt, prompt, str(sample["id"]))[:16]
        for slot in range(slots):
            items.append(WorkItem(_hash(prompt_id, str(slot), options)[:20], prompt_id, "metrics_explanation",
                                  p_index, slot, domain.system_prompt, prompt, term=label, category="grounded",
                                  source_sample_id=str(sample["id"]), label=label, moved=tuple(moved),
                                  structured=True))
    return items


def _label(sample: dict) -> str:
    """A sample's label: its anomaly kind, or "normal"."""
    return (sample.get("anomaly_type") or "normal") if sample["status"] == "anomaly" else "normal"
