"""The training samples in the forms trainers read: Parquet or JSONL split by host, chat JSONL, a card.

`write_training_folder` writes `<output>/metrics_dataset/`:
  data/<split>-NNNNN.parquet, data/<split>-NNNNN.jsonl   the samples, flat columns, split and host added
  chat/<split>-NNNNN.jsonl, chat/README.md              system/user/assistant messages per sample
  manifest.json                                         the run, the splits (hosts, sizes), every file
  README.md                                             the dataset card (Hugging Face YAML header)
Every sample of a host lands in the same split; which hosts go where depends only on the seed.
The folder is built in `metrics_dataset.partial/` and swapped in whole (`datasafe.swap_folder`), and its bytes
depend only on the samples, the seed, the options and the reports the card quotes: no clock time.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import orjson
import polars as pl
import yaml

from datasafe import atomic_path, atomic_write_bytes, recover_folder, swap_folder
from datasafe.integrity import file_record

from .anomalies import ANOMALY_KINDS
from .catalogue import METRICS
from .context import CONTEXT_PREFIX, HISTORY_PREFIX
from .config import SimConfig
from .errors import SimulatorError
from .export import anomalous_metrics
from .logs import EXCERPT_LINES, excerpt_text_expr
from .population import exact_counts

if TYPE_CHECKING:
    import pyarrow as pa

SPLITS = ("train", "validation", "test")
FORMATS = ("json", "parquet", "jsonl")  # json: metrics_dataset.json; the others: the folder below
FOLDER_FORMATS = ("parquet", "jsonl")
DEFAULT_SHARES = (0.8, 0.1, 0.1)
FOLDER_NAME = "metrics_dataset"
OWNED_FOLDERS = (FOLDER_NAME, f"{FOLDER_NAME}.partial", f"{FOLDER_NAME}.old")
# SeedSequence spawn key of the host split; two entries, so it never equals a host's own (host,) key
SPLIT_STREAM = (4, 0)
SHARD_ROWS = 500_000  # samples per data file
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
SYSTEM_PROMPT = ("You watch the metrics of a server in an IBM Spectrum Conductor cluster. Given one snapshot "
                 "of its metrics, say whether it is normal or anomalous, name the kind of anomaly, and explain "
                 "what the numbers show.")


# ------------------------------------------------------------------------------ options
def parse_formats(values: Iterable[str] | None) -> tuple[str, ...]:
    """`--format` values (repeated and/or comma-separated) as known formats in FORMATS order."""
    asked = [v.strip().lower() for value in (values or ["json"]) for v in value.split(",") if v.strip()]
    unknown = sorted(set(asked) - set(FORMATS))
    if unknown or not asked:
        what = f"unknown format {', '.join(map(repr, unknown))}" if unknown else "no format given"
        raise SimulatorError(f"--format: {what}; choose from {', '.join(FORMATS)} (several: --format json,parquet)")
    return tuple(f for f in FORMATS if f in asked)


def parse_shares(text: str | None) -> tuple[float, float, float]:
    """`--splits` as shares of hosts for train/validation/test: '80/10/10', '0.8,0.1,0.1'."""
    if text is None:
        return DEFAULT_SHARES
    parts = text.replace(",", "/").split("/")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != len(SPLITS) or not all(math.isfinite(v) and v >= 0 for v in values) or not values[0] > 0:
        raise SimulatorError(f"--splits: expected three shares of hosts train/validation/test, e.g. 80/10/10, "
                             f"train above 0 and none negative; got {text!r}")
    total = sum(values)
    return tuple(v / total for v in values)


# ------------------------------------------------------------------------------ splits
def split_counts(n_hosts: int, shares: Sequence[float]) -> np.ndarray:
    """Hosts per split: proportional to `shares`, adding up to `n_hosts`, and at least one host for
    every split with a share when there are enough hosts."""
    shares = np.asarray(shares, dtype=np.float64)
    counts = exact_counts(shares, n_hosts)
    wanted = np.flatnonzero(shares > 0)
    if n_hosts >= len(wanted):
        for s in wanted[counts[wanted] == 0]:
            counts[np.argmax(counts)] -= 1
            counts[s] += 1
    return counts


def host_splits(hosts: np.ndarray, shares: Sequence[float], seed: int) -> pl.DataFrame:
    """(host, split) for every distinct host: hosts shuffled by the seed's split stream, then cut."""
    unique = np.unique(np.asarray(hosts, dtype=np.int64))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=SPLIT_STREAM))
    order = rng.permutation(unique)
    split = np.repeat(np.arange(len(SPLITS)), split_counts(len(unique), shares))
    return pl.DataFrame({"host": order, "split": np.array(SPLITS)[split]}).sort("host")


# ------------------------------------------------------------------------------ tables
def _timestamp(dtype: pl.DataType) -> pl.Expr:
    """The sample's time as a UTC datetime, whether the samples hold it as ISO text or a datetime."""
    col = pl.col("timestamp")
    if dtype == pl.Utf8:
        return col.str.to_datetime(TIME_FORMAT, time_unit="us", time_zone="UTC")
    if getattr(dtype, "time_zone", None):
        return col.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    return col.dt.replace_time_zone("UTC").dt.cast_time_unit("us")


def labelled_samples(samples: pl.DataFrame, splits: pl.DataFrame) -> pl.DataFrame:
    """The samples with their split; host as int32 and timestamp a UTC datetime whatever they were."""
    frame = samples.with_columns(pl.col("host").cast(pl.Int64), _timestamp(samples.schema["timestamp"]))
    frame = frame.join(splits, on="host", how="left", maintain_order="left")
    return frame.with_columns(pl.col("host").cast(pl.Int32))


def training_table(labelled: pl.DataFrame) -> pl.DataFrame:
    """The JSON dataset's fields, metrics as flat columns, with split and host: the Parquet rows; then
    the evidence (host facts, ctx_<metric> and hist_<metric> lists) and the targets, flat."""
    if f"{CONTEXT_PREFIX}{METRICS[0]}" in labelled.columns:
        labelled = labelled.with_columns(anomalous_metrics(labelled))
    return labelled.select(
        "id", "split", "host", "timestamp", *METRICS,
        pl.col("status").cast(pl.Utf8), pl.col("kind").cast(pl.Utf8).alias("anomaly_type"),
        "explanation", "session_id", "batch_id", *evidence_columns(labelled),
    )


def evidence_columns(samples: pl.DataFrame) -> list[pl.Expr]:
    """What the JSON sample carries beyond the seed's keys, as flat columns (none for older frames);
    `anomalous_metrics` is the column `export.anomalous_metrics` makes."""
    if f"{CONTEXT_PREFIX}{METRICS[0]}" not in samples.columns:
        return []
    lists = [pl.col(f"{prefix}{m}").arr.to_list() for prefix in (CONTEXT_PREFIX, HISTORY_PREFIX)
             for m in METRICS if f"{prefix}{m}" in samples.columns]
    return [pl.col("host_name"), pl.col("profile").cast(pl.Utf8), pl.col("cores"), *lists,
            pl.col("severity"), "anomalous_metrics", "minutes_since_onset", "minutes_until_end", "exhaustion_metric",
            "minutes_to_exhaustion", "visible", "evidence_spreads", "hard_negative",
            *(c for c in ("log_total", "log_lines") if c in samples.columns)]


def _readings(prefix: str, m: str) -> pl.Expr:
    return pl.col(f"{prefix}{m}").arr.to_list().list.eval(
        pl.element().cast(pl.Utf8).fill_null("-")).list.join(", ")


def jsonl_table(table: pl.DataFrame) -> pl.DataFrame:
    """The Parquet rows for JSON Lines: the timestamp as the JSON dataset writes it."""
    return table.with_columns(pl.col("timestamp").dt.strftime(TIME_FORMAT))


def chat_table(labelled: pl.DataFrame, config: SimConfig) -> pl.DataFrame:
    """One conversation per sample: the metrics in the user message, status, kind and explanation in
    the assistant's answer."""
    lines = [pl.format(f"{spec.name}: {{}} {spec.unit}", pl.col(spec.name).cast(pl.Utf8)) for spec in config.metrics]
    if f"{CONTEXT_PREFIX}{METRICS[0]}" in labelled.columns:  # what the explanation is computed from
        minutes = config.simulation.interval_s / 60
        lines.append(f"Readings every {minutes:g} minutes, oldest first, the last is now (- = no data):")
        lines += [pl.format(f"{m}: {{}}", _readings(CONTEXT_PREFIX, m)) for m in METRICS]
        if f"{HISTORY_PREFIX}{METRICS[0]}" in labelled.columns:
            lines.append("Hourly means, oldest first, the last is the hour ending now:")
            lines += [pl.format(f"{m}: {{}}", _readings(HISTORY_PREFIX, m)) for m in METRICS]
    if "log_lines" in labelled.columns:  # the excerpt of the same window's log lines (runs with --logs)
        lines.append(pl.format("Log lines of the same window ({} of {}):",
                               pl.col("log_lines").list.len(), pl.col("log_total")))
        lines.append(excerpt_text_expr(pl.col("log_lines")))
    user = pl.concat_str([
        pl.format("Host: {} profile, {} cores. Metrics at {}:",
                  pl.col("profile").cast(pl.Utf8), pl.col("cores"), pl.col("timestamp").dt.strftime(TIME_FORMAT)),
        *[pl.lit(x) if isinstance(x, str) else x for x in lines]], separator="\n")
    verdict = (pl.when(pl.col("kind").is_null()).then(pl.lit("Status: normal."))
               .otherwise(pl.format("Status: anomaly ({}).", pl.col("kind").cast(pl.Utf8))))
    assistant = pl.concat_str([verdict, pl.col("explanation")], separator="\n")
    messages = pl.concat_list([
        pl.struct(role=pl.lit("system"), content=pl.lit(SYSTEM_PROMPT)),
        pl.struct(role=pl.lit("user"), content=user),
        pl.struct(role=pl.lit("assistant"), content=assistant),
    ])
    return labelled.select("id", "split", messages.alias("messages"))


# ------------------------------------------------------------------------------ files
def _arrow(frame: pl.DataFrame) -> pa.Table:
    """A frame as Arrow with plain (not large or view) strings: the types every reader knows."""
    import pyarrow as pa  # here, not at import: the JSON-only sample job never loads Arrow

    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    return table.cast(pa.schema([_plain(f) for f in table.schema]))


def _plain(field: pa.Field) -> pa.Field:
    import pyarrow as pa

    t = field.type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return field.with_type(pa.string())
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return field.with_type(pa.list_(_plain(t.value_field)))
    if pa.types.is_struct(t):
        return field.with_type(pa.struct([_plain(f) for f in t]))
    return field


@dataclass(frozen=True)
class SplitFiles:
    """What one config of the folder holds: its files and rows per split, and its Arrow schema."""

    files: dict[str, list[str]]   # split -> paths relative to the folder
    rows: dict[str, int]
    nbytes: dict[str, int]        # Arrow bytes in memory, per split (the card's num_bytes)
    schema: pa.Schema


def write_split_files(folder: Path, labelled: pl.DataFrame, build: Callable[[pl.DataFrame], pl.DataFrame], *,
                      subdir: str, suffix: str, meta: dict) -> SplitFiles:
    """`build` of each split's samples as `<subdir>/<split>-NNNNN<suffix>` files of SHARD_ROWS rows each,
    built one file at a time (a chat file is several times its samples' size)."""
    files, rows, nbytes = {}, {}, {}
    schema = _arrow(build(labelled.head(0))).schema
    for split in SPLITS:
        part = labelled.filter(pl.col("split") == split)
        if not len(part):
            continue
        files[split], rows[split], nbytes[split] = [], len(part), 0
        for i, lo in enumerate(range(0, len(part), SHARD_ROWS)):
            name = f"{subdir}/{split}-{i:05d}{suffix}"
            chunk = build(part.slice(lo, SHARD_ROWS))
            nbytes[split] += _write(chunk, folder / name, {**meta, "split": split})
            files[split].append(name)
    return SplitFiles(files, rows, nbytes, schema)


def _write(frame: pl.DataFrame, path: Path, key_values: dict) -> int:
    """Write `frame` as Parquet (with `key_values` under b"simulator" in its metadata) or JSON Lines,
    by the path's suffix; return its Arrow size in bytes."""
    table = _arrow(frame)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            meta = {**(table.schema.metadata or {}), b"simulator": orjson.dumps(key_values, option=orjson.OPT_SORT_KEYS)}
            import pyarrow.parquet as pq

            pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")
        else:
            frame.write_ndjson(tmp)
    return int(table.nbytes)


# ------------------------------------------------------------------------------ the folder
@dataclass(frozen=True)
class TrainingFolder:
    """What `write_training_folder` wrote."""

    path: Path
    formats: tuple[str, ...]
    splits: dict[str, dict]       # split -> {"hosts", "samples", "normal", "anomaly"}


def write_training_folder(output_dir: Path, samples: pl.DataFrame, metadata: dict, config: SimConfig, *,
                          formats: Sequence[str], shares: Sequence[float] = DEFAULT_SHARES) -> TrainingFolder | None:
    """Write `<output_dir>/metrics_dataset/` in the folder formats asked for (None when none is)."""
    folder_formats = tuple(f for f in FOLDER_FORMATS if f in formats)
    if not folder_formats:
        return None
    output_dir = Path(output_dir)
    final, partial = output_dir / FOLDER_NAME, output_dir / f"{FOLDER_NAME}.partial"
    recover_training_folder(output_dir)
    if partial.exists():
        shutil.rmtree(partial)  # leftovers of an interrupted export
    partial.mkdir(parents=True)
    seed = int(metadata["seed"])
    splits = host_splits(samples["host"].to_numpy(), shares, seed)
    labelled = labelled_samples(samples, splits)
    meta = {k: metadata[k] for k in ("session_id", "config_hash", "seed") if k in metadata}
    configs = {}
    if "parquet" in folder_formats:
        configs["parquet"] = write_split_files(partial, labelled, training_table, subdir="data", suffix=".parquet",
                                               meta=meta)
    if "jsonl" in folder_formats:
        configs["jsonl"] = write_split_files(partial, labelled, lambda f: jsonl_table(training_table(f)),
                                             subdir="data", suffix=".jsonl", meta=meta)
    chat = write_split_files(partial, labelled, lambda f: chat_table(f, config), subdir="chat", suffix=".jsonl",
                             meta=meta)
    sizes = split_sizes(labelled, splits)
    manifest = folder_manifest(partial, metadata, formats=folder_formats, shares=shares, splits=splits, sizes=sizes)
    atomic_write_bytes(partial / "manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    atomic_write_bytes(partial / "chat" / "README.md", chat_card(partial, chat, manifest).encode())
    card = dataset_card(partial, configs, manifest=manifest, config=config, output_dir=output_dir)
    atomic_write_bytes(partial / "README.md", card.encode())
    swap_folder(partial, final, step=FOLDER_NAME)
    return TrainingFolder(final, folder_formats, sizes)


def split_sizes(labelled: pl.DataFrame, splits: pl.DataFrame) -> dict[str, dict]:
    """Hosts, samples, normal and anomalous samples per split (every split, empty ones too)."""
    hosts = dict(splits.group_by("split").len().iter_rows())
    counts = {split: (n, normal) for split, n, normal in labelled.group_by("split").agg(
        pl.len(), pl.col("kind").is_null().sum()).iter_rows()}
    sizes = {}
    for split in SPLITS:
        n, normal = counts.get(split, (0, 0))
        sizes[split] = {"hosts": int(hosts.get(split, 0)), "samples": int(n), "normal": int(normal),
                        "anomaly": int(n - normal)}
    return sizes


def folder_manifest(folder: Path, metadata: dict, *, formats: Sequence[str], shares: Sequence[float],
                    splits: pl.DataFrame, sizes: dict) -> dict:
    """The run (the JSON dataset's metadata without its clock time), the splits and every file."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {
        **{k: v for k, v in metadata.items() if k != "generated_at"},
        "formats": list(formats),
        "split_shares": dict(zip(SPLITS, (round(s, 6) for s in shares))),
        "split_stream": list(SPLIT_STREAM),
        "splits": sizes,
        "split_hosts": {s: splits.filter(pl.col("split") == s)["host"].to_list() for s in SPLITS},
        "files": {p.relative_to(folder).as_posix(): file_record(p) for p in files},
    }


def recover_training_folder(output_dir: Path) -> bool:
    """Finish a swap a crash interrupted: put `metrics_dataset.old/` back when the folder is gone,
    drop it when the new folder is in place.  True when the previous folder was put back."""
    return recover_folder(Path(output_dir) / FOLDER_NAME)


# ------------------------------------------------------------------------------ the cards
def features(schema: pa.Schema) -> list[dict]:
    """Arrow fields as the Hugging Face card's `features` list."""
    return [_feature(f) for f in schema]


_DTYPES = {"string": "string", "int32": "int32", "int64": "int64", "float": "float32", "double": "float64",
           "bool": "bool"}


def _feature(field: pa.Field) -> dict:
    import pyarrow as pa

    t = field.type
    if pa.types.is_list(t) and pa.types.is_struct(t.value_type):
        return {"name": field.name, "list": [_feature(f) for f in t.value_type]}
    if pa.types.is_list(t):
        return {"name": field.name, "list": _DTYPES[str(t.value_type)]}
    if pa.types.is_timestamp(t):
        return {"name": field.name, "dtype": f"timestamp[{t.unit}" + (f", tz={t.tz}]" if t.tz else "]")}
    return {"name": field.name, "dtype": _DTYPES[str(t)]}


def _config_info(name: str, folder: Path, files: SplitFiles) -> dict:
    download = sum((folder / p).stat().st_size for paths in files.files.values() for p in paths)
    return {
        "config_name": name,
        "features": features(files.schema),
        "splits": [{"name": s, "num_bytes": files.nbytes[s], "num_examples": files.rows[s]} for s in files.files],
        "download_size": download,
        "dataset_size": sum(files.nbytes.values()),
    }


def _yaml_header(configs: list[dict], infos: list[dict]) -> str:
    head = yaml.safe_dump({"configs": configs, "dataset_info": infos}, sort_keys=False, allow_unicode=True,
                          width=1000)
    return f"---\n{head}---\n"


def _data_files(files: SplitFiles, strip: str = "") -> list[dict]:
    return [{"split": s, "path": f"{paths[0].removeprefix(strip).rsplit('-', 1)[0]}-*{Path(paths[0]).suffix}"}
            for s, paths in files.files.items()]


def dataset_card(folder: Path, configs: dict[str, SplitFiles], *, manifest: dict, config: SimConfig,
                 output_dir: Path) -> str:
    """README.md of the folder: the YAML header `datasets.load_dataset` reads, then what the data is."""
    main = "parquet" if "parquet" in configs else "jsonl"  # one builder per folder: the first format loads
    files = configs[main]
    header = _yaml_header([{"config_name": "default", "data_files": _data_files(files), "default": True}],
                          [_config_info("default", folder, files)])
    return header + "\n".join([*_card_intro(manifest, main, configs),
                               *_card_fields(config, main, files.schema.names),
                               *_card_labels(config), *_realism_lines(output_dir),
                               *_learnability_lines(output_dir)]) + "\n"


def _card_intro(manifest: dict, main: str, configs: dict[str, SplitFiles]) -> list[str]:
    n, shares = manifest["total_samples"], manifest["split_shares"]
    share_text = "/".join(f"{100 * shares[s]:g}" for s in SPLITS)
    stats = manifest["generation_stats"]
    lines = [
        "# Simulated server metrics with labelled anomalies", "",
        f"{n:,} snapshots of the metrics of simulated hosts of an IBM Spectrum Conductor cluster on Red Hat "
        f"Linux, each labelled normal or with the kind of anomaly injected, and an explanation written from the "
        f"sample's own values: {stats['normal_samples']:,} normal, {stats['anomaly_samples']:,} anomalous.", "",
        "## How it was made", "",
        f"- Generator: {manifest.get('generator', 'simulator')}, config hash `{manifest['config_hash']}`, "
        f"seed `{manifest['seed']}`, session `{manifest['session_id']}`. "
        f"`python -m simulator --samples {n} --anomaly-ratio {manifest['anomaly_ratio']} --seed {manifest['seed']} "
        f"--format {','.join(manifest['formats'])} --splits {share_text}` with the config of that hash writes "
        "these files again byte for byte.",
        "- Each host's metrics are simulated over days by a numba kernel (correlated processes per host "
        "profile); anomaly events are injected and a metric point is labelled where the trace with the event "
        "differs from the same trace without it. One sample is taken inside each event, the normal samples at "
        "points where no metric of the host is anomalous.",
        f"- Splits by host ({share_text} of the hosts, shuffled with numpy "
        f"`SeedSequence({manifest['seed']}, spawn_key={tuple(manifest['split_stream'])})`): every sample of a "
        "host is in one split only, so validation and test hosts are never seen in training.", "",
        "| split | hosts | samples | normal | anomalous |", "|---|---:|---:|---:|---:|",
        *(f"| {s} | {v['hosts']} | {v['samples']} | {v['normal']} | {v['anomaly']} |"
          for s, v in manifest["splits"].items()), "",
        "## Files and loading", "",
        "```python",
        "from datasets import load_dataset",
        f"ds = load_dataset(\"path/to/metrics_dataset\")        # {', '.join(configs[main].files)} ({main})",
        "chat = load_dataset(\"path/to/metrics_dataset/chat\")  # the same samples as conversations",
        "```", "",
        f"- `data/<split>-NNNNN.{'parquet' if main == 'parquet' else 'jsonl'}`: one row per sample (the default config).",
    ]
    if main == "parquet" and "jsonl" in configs:
        lines.append("- `data/<split>-NNNNN.jsonl`: the same rows as JSON Lines (timestamp as ISO 8601 text): "
                     "`load_dataset(\"json\", data_files={\"train\": \"path/to/metrics_dataset/data/train-*.jsonl\"})`.")
    lines += ["- `chat/<split>-NNNNN.jsonl`: `messages` (system, user with the metrics, assistant with the status, "
              "kind and explanation), `id`, `split`; its own card in `chat/README.md`.",
              "- `manifest.json`: the run, the split shares, the hosts of each split, every file's size and sha256.", ""]
    return lines


_EVIDENCE_FIELDS = {  # the columns of a sample's evidence and targets (training/README.md has the details)
    "host_name": "the host's name", "profile": "the host's profile", "cores": "the host's CPU cores",
    f"{CONTEXT_PREFIX}*": "each metric's readings over the context window at the native interval, oldest first, "
                          "the last is the snapshot (null = no data)",
    f"{HISTORY_PREFIX}*": "each metric's 24 hourly means, oldest first, the last is the hour ending at the snapshot",
    "severity": "the event's severity, 0..1 (target; the targets are null for normal samples)",
    "anomalous_metrics": "the metrics labelled anomalous at that point (target; [] for normal samples)",
    "minutes_since_onset": "minutes since the event began (target)",
    "minutes_until_end": "minutes until the event ends (target)",
    "exhaustion_metric": "the metric heading for exhaustion, disk or heap (target)",
    "minutes_to_exhaustion": "minutes until that resource is full; null when not reached before the event ends (target)",
    "visible": "some labelled metric is off its usual level as the explanation defines it (target)",
    "evidence_spreads": "how far off, in spreads of the context (target)",
    "hard_negative": "a normal sample drawn from the busiest healthy moments (--hard-negatives)",
    "log_total": "with --logs: how many log lines the host wrote in the context window",
    "log_lines": f"with --logs: up to {EXCERPT_LINES} of them (time, source, severity as the collector "
                 "records it, message), one per line kind first, then the most severe, then the rarest",
}


def _card_fields(config: SimConfig, main: str, columns: Sequence[str] = ()) -> list[str]:
    ts = "UTC datetime" if main == "parquet" else "ISO 8601 UTC text"
    evidence = [f"| `{name}` | {text} |" for name, text in _EVIDENCE_FIELDS.items()
                if any(c == name or (name.endswith("*") and c.startswith(name[:-1])) for c in columns)]
    return ["## Fields", "", "| column | meaning |", "|---|---|",
            "| `id` | unique sample id, `<session_id>-<index>` |",
            "| `split` | train, validation or test |",
            "| `host` | index of the simulated host (all its samples are in one split) |",
            f"| `timestamp` | when the snapshot was taken ({ts}) |",
            *(f"| `{m.name}` | {m.unit}{', integer' if m.integer else ''} |" for m in config.metrics),
            "| `status` | `normal` or `anomaly` |",
            "| `anomaly_type` | the anomaly kind (below); null for normal samples |",
            "| `explanation` | what the numbers show, written from the sample's values and the same host's normal |",
            "| `session_id`, `batch_id` | the generation run and the block of hosts the sample came from |",
            *evidence, ""]


def _card_labels(config: SimConfig) -> list[str]:
    lines = ["## Labels", "",
             "- `normal`: no metric of the host is disturbed by an anomaly at that instant.",
             "- `anomaly`: the sample lies inside an injected event; `anomaly_type` is its kind:"]
    for a in config.anomalies:
        kind = ANOMALY_KINDS[a.kind]
        lines.append(f"  - `{a.kind}`: {kind.description} (primary metric `{kind.primary}`; "
                     f"{a.duration_minutes[0]:g}-{a.duration_minutes[1]:g} minutes)")
    return [*lines, ""]


def _read_report(path: Path) -> dict | None | str:
    """A report's JSON object; None when absent; a one-line problem when unreadable."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        return f"{path.name} could not be read ({type(exc).__name__})"
    return data if isinstance(data, dict) else f"{path.name} is not a JSON object"


def _realism_lines(output_dir: Path) -> list[str]:
    report = _read_report(output_dir / "realism" / "realism_report.json")
    lines = ["## Realism", ""]
    if report is None:
        return [*lines, "Not measured next to this export: `python -m simulator realism` writes "
                        "`realism/realism_report.json`; generate again to quote it here.", ""]
    if isinstance(report, str):
        return [*lines, f"`realism/realism_report.json`: {report}.", ""]
    checks, shapes = report.get("checks") or [], report.get("anomaly_shapes") or []
    inside = sum(bool(c.get("within")) for c in checks if isinstance(c, dict))
    shapes_in = sum(bool(c.get("within")) for c in shapes if isinstance(c, dict))
    out = [f"{c.get('metric', c.get('kind'))} ({c.get('hosts', 'events')}) {c.get('statistic')}"
           for c in (*checks, *shapes) if isinstance(c, dict) and not c.get("within")]
    lines.append(f"From `realism/realism_report.json` (its own run: seed {report.get('seed')}, "
                 f"{report.get('hosts')} hosts): {inside} of {len(checks)} statistics inside the range real NAB "
                 f"hosts show, {shapes_in} of {len(shapes)} anomaly-shape statistics; passed: "
                 f"{'yes' if report.get('passed') else 'no'}" + (f"; outside: {', '.join(out)}." if out else "."))
    disc = report.get("discriminative")
    if isinstance(disc, dict) and isinstance(disc.get("score"), (int, float)):
        lines.append(f"Discriminative score (accuracy telling real from simulated CPU days; 0.5 = "
                     f"indistinguishable): {disc['score']:.3f}.")
    return [*lines, ""]


def _learnability_lines(output_dir: Path) -> list[str]:
    report = _read_report(output_dir / "learnability_report.json")
    lines = ["## Learnability", ""]
    if report is None:
        return [*lines, "Not measured yet: run `python -m simulator evaluate` (it writes "
                        "`learnability_report.json`), then generate again to quote its figures here.", ""]
    if isinstance(report, str):
        return [*lines, f"`learnability_report.json`: {report}.", ""]
    scalars = [(k, v) for k, v in report.items() if isinstance(v, (str, int, float, bool)) or v is None]
    return [*lines, "From `learnability_report.json`:", "",
            *(f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in scalars), ""]


def chat_card(folder: Path, chat: SplitFiles, manifest: dict) -> str:
    """chat/README.md: the conversations as their own dataset (one file format per card)."""
    info = _config_info("default", folder, chat)
    data_files = _data_files(chat, strip="chat/")
    return _yaml_header([{"config_name": "default", "data_files": data_files, "default": True}], [info]) + "\n".join([
        "# Simulated server metrics as conversations", "",
        f"The samples of `../README.md` (session `{manifest['session_id']}`, seed `{manifest['seed']}`), "
        "in the same splits, one conversation per sample: the system prompt, the user message with the host's "
        "profile, cores and metrics, and the assistant's answer: `Status: normal.` or `Status: anomaly (<kind>).` "
        "and the explanation.", "",
        "```python",
        "from datasets import load_dataset",
        "chat = load_dataset(\"path/to/metrics_dataset/chat\")",
        "```", "",
        f"System prompt: {SYSTEM_PROMPT}", ""])
