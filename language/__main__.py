"""Command line: `python -m language generate|status|retry-failed|export|reset`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from datasafe.errors import configure_logging

from .errors import LanguageError, UserError, one_line

COMMANDS = ("generate", "status", "retry-failed", "export", "reset", "restore")
STAGING_NAME = "language_staging"
MAX_COUNT = 10**8  # prompts per type, as for the targets in models.yaml
EXIT_PARTIAL = 3  # the run finished but some items failed; their reasons are in the ledger
EXIT_BUDGET = 4   # --max-cost or --max-tokens-total stopped the run; generate again to finish the rest


class _Parser(argparse.ArgumentParser):
    """argparse with exact option names (no abbreviations), one-line errors and exit status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m language",
                     description="Generate the language training set by querying model servers, with "
                                 "crash-safe staging and exact resume.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)

    def common(p, backends: bool):
        p.add_argument("--output-dir", type=Path, default=Path("training"),
                       help="where the dataset and language_staging/ go (default: training)")
        p.add_argument("--config-dir", type=Path, default=None,
                       help="folder with models.yaml and the domain YAML files (default: data_config/)")
        p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
        if not backends:
            return
        p.add_argument("--backend", action="append", default=[], metavar="NAME",
                       help="use this backend of models.yaml (repeatable; default: the enabled ones)")
        p.add_argument("--endpoint", action="append", default=[], metavar="TYPE=URL",
                       help="an ad-hoc server, e.g. ollama=http://127.0.0.1:11434 or openai=http://host:8000 "
                            "(repeatable; with --models; replaces the YAML backends unless --backend is given)")
        p.add_argument("--models", default=None, help="comma-separated model names for --endpoint servers")
        p.add_argument("--api-key-env", default=None,
                       help="environment variable holding the API key for --endpoint servers")
        p.add_argument("--concurrency", type=int, default=None, help="requests in flight per endpoint")
        p.add_argument("--no-export", action="store_true", help="stage only; do not write the dataset files")
        p.add_argument("--max-cost", type=float, default=None, metavar="AMOUNT",
                       help="budget of this run (not of earlier ones; `status` shows what the staging used) in "
                            "the currency of the prices in models.yaml: no call is issued that could cross it; "
                            f"the run then finishes the calls in flight and exits with status {EXIT_BUDGET}, and a "
                            "later generate does the rest")
        p.add_argument("--max-tokens-total", type=int, default=None, metavar="N",
                       help="budget of this run in tokens (prompt and answer, all calls), like --max-cost")

    def selection(p):
        p.add_argument("--allow-fewer", action="store_true",
                       help="write the export even when it holds fewer samples than the file it replaces "
                            "(without it such an export stops with an error and changes nothing)")
        p.add_argument("--only-types", default=None, metavar="TYPES",
                       help="export only these comma-separated sample types (default: every accepted sample "
                            "in staging, whatever run produced it)")
        p.add_argument("--only-last-run", action="store_true",
                       help="export only the items of the last generate (default: every accepted sample)")

    gen = sub.add_parser("generate", help="generate the remaining work and export")
    common(gen, True)
    gen.add_argument("--types", default=None, help="comma-separated sample types (default: all with a target)")
    gen.add_argument("--count", type=int, default=None, help="prompts per selected type (default: targets)")
    gen.add_argument("--seed", type=int, default=None, help="prompt sampling and generation seed")
    gen.add_argument("--fresh", action="store_true",
                     help="back up the staging folder and start from nothing")
    gen.add_argument("--from-metrics", type=Path, default=None, metavar="METRICS_JSON",
                     help="build metrics_explanation prompts from the samples of a simulator dataset (e.g. "
                          "training/metrics_dataset.json) and keep only answers that agree with their labels")
    selection(gen)
    retry = sub.add_parser("retry-failed", help="forget failed items and generate them again")
    common(retry, True)
    selection(retry)
    common(sub.add_parser("status", help="completion per type, failures, model distribution"), False)
    export = sub.add_parser("export", help="write the dataset JSON and chat JSONL from every accepted sample "
                                           "in staging")
    common(export, False)
    selection(export)
    common(sub.add_parser("restore", help="repair damaged outputs: the dataset from its newest intact backup, "
                                          "damaged staging shards from the ledger"), False)
    reset = sub.add_parser("reset", help="back up and remove the staging folder")
    common(reset, False)
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("python -m language", "language")
    try:
        _check_output_dir(args)
        _check_selection(args)
        if args.command in ("generate", "retry-failed"):
            return _generate(args)
        return {"status": _status, "export": _export, "reset": _reset, "restore": _restore}[args.command](args)
    except UserError as exc:
        print(f"python -m language: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"python -m language: error: {one_line(where + (exc.strerror or str(exc)))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("python -m language: interrupted; finished items are kept in staging, run generate again to "
              "finish the rest", file=sys.stderr)
        return 130


# ---------------------------------------------------------------------------- helpers
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("monitoring-datafactory")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (`status | head -1`): stop without a message, as Unix tools do.
    Python would report the pipe again when it flushes stdout at exit, so stdout goes to /dev/null."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # 128 + SIGPIPE, what a shell reports for a command a closed pipe ended


def _load(args):
    from .domain import load_domain
    from .settings import load_settings

    domain = load_domain(args.config_dir)
    settings = load_settings(None if args.config_dir is None else args.config_dir / "models.yaml")
    return domain, settings


def _check_output_dir(args) -> None:
    """Refuse, before anything is read or written, an --output-dir that is not a writable folder or
    whose outputs are not regular files and folders inside it (a symbolic link, a FIFO, a folder where
    the dataset goes, a file where the staging goes): writing there would leave the folder or fail
    half-way."""
    from datasafe import output_folder_problem

    from .export import OWNED_FILES

    problem = output_folder_problem(args.output_dir, files=OWNED_FILES, folders=(STAGING_NAME,))
    if problem:
        raise LanguageError(f"--output-dir: {problem}")


def _check_selection(args) -> None:
    from .domain import SAMPLE_TYPES

    for t in _only_types(args) or ():
        if t not in SAMPLE_TYPES:
            raise LanguageError(f"--only-types: unknown sample type {t!r} (known: {', '.join(SAMPLE_TYPES)})")


def _only_types(args) -> list[str] | None:
    chosen = getattr(args, "only_types", None)
    return None if chosen is None else [t.strip() for t in chosen.split(",") if t.strip()]


def _staging(args) -> Path:
    return args.output_dir / STAGING_NAME


def _backend_specs(args, settings):
    from .backends import BACKENDS
    from .settings import BackendSpec

    specs = []
    names = {b.name: b for b in settings.backends}
    for name in args.backend:
        if name not in names:
            raise LanguageError(f"--backend: {name!r} is not in {settings.source} (known: {', '.join(names)})")
        specs.append(names[name])
    if args.endpoint:
        models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
        if not models:
            raise LanguageError("--endpoint: give the model names with --models a,b")
        for i, entry in enumerate(args.endpoint):
            kind, _, url = entry.partition("=")
            remote = [t for t, cls in BACKENDS.items() if cls.needs_endpoint]
            if kind not in remote or not url.startswith(("http://", "https://")):
                raise LanguageError(f"--endpoint: {entry!r} is not TYPE=URL with TYPE one of {', '.join(remote)}")
            specs.append(BackendSpec(name=f"{kind}-{i}", type=kind, enabled=True, models=tuple(models),
                                     endpoints=(url.rstrip("/"),), api_key_env=args.api_key_env,
                                     concurrency=args.concurrency or 4))
    if not specs:
        specs = list(settings.enabled())
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise LanguageError(f"--concurrency: must be at least 1, got {args.concurrency}")
        specs = [dataclasses.replace(s, concurrency=args.concurrency) for s in specs]
    if not specs:
        raise LanguageError(f"no backend enabled in {settings.source}; enable one or pass --endpoint TYPE=URL")
    return specs


def _config_hash(domain, settings) -> str:
    parts = [domain.system_prompt, repr(sorted(domain.templates.items())), repr(domain.technical_terms),
             repr(domain.error_patterns), repr(domain.personalities), repr(domain.question_styles),
             repr(domain.english_patterns), repr(domain.project_management_terms), repr(domain.banking_terms),
             repr(domain.metrics_patterns), settings.fingerprint(), str(settings.rotation.models_per_prompt)]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def _targets(args, settings) -> dict[str, int]:
    from .domain import SAMPLE_TYPES

    targets = dict(settings.targets)
    if args.types:
        chosen = [t.strip() for t in args.types.split(",") if t.strip()]
        for t in chosen:
            if t not in SAMPLE_TYPES:
                raise LanguageError(f"--types: unknown sample type {t!r} (known: {', '.join(SAMPLE_TYPES)})")
        targets = {t: targets.get(t, 0) for t in chosen}
    if args.count is not None:
        if args.count < 0:
            raise LanguageError(f"--count: must be at least 0, got {args.count}")
        if args.count > MAX_COUNT:
            shown = f"{args.count}" if args.count < 10**16 else f"a number of {len(str(args.count))} digits"
            raise LanguageError(f"--count: at most {MAX_COUNT:,} prompts per type (the limit of targets in "
                                f"models.yaml), got {shown}")
        targets = {t: args.count for t in targets}
    return targets


# ---------------------------------------------------------------------------- commands
def _generate(args) -> int:
    from .ledger import Ledger
    from .quality import DuplicateIndex
    from .usage import Budget, Prices

    domain, settings = _load(args)
    staging = _staging(args)
    specs = _backend_specs(args, settings)
    seed = settings.generation.seed if getattr(args, "seed", None) is None else args.seed
    if not 0 <= seed < 2**63:
        raise LanguageError(f"--seed: must be between 0 and 2^63-1, got {seed}")
    budget = Budget.from_options(args.max_cost, args.max_tokens_total, Prices.of_settings(settings, specs),
                                 [(s.name, m) for s in specs for m in s.models])
    retry = args.command == "retry-failed"
    if retry and not (staging / "ledger.sqlite").is_file():
        raise LanguageError(f"retry-failed: no earlier generate in {staging}")
    # every check (types, counts, backends, vocabulary, --from-metrics) comes before the staging is touched;
    # retry-failed reads the last generate's work from the ledger it already has
    ledger = Ledger(staging) if retry else None
    try:
        work = _work(args, domain, settings, specs, seed, ledger)
    except BaseException:
        if ledger is not None:
            ledger.close()
        raise
    if getattr(args, "fresh", False) and staging.exists():
        backup = staging.with_name(f"{STAGING_NAME}.{_stamp()}.bak")
        staging.rename(backup)
        if not args.quiet:
            print(f"previous staging kept as {backup}", file=sys.stderr)
    targets, seed, from_metrics, items, vocabulary, backends = work
    if ledger is None:
        ledger = Ledger(staging)
    try:
        settings = dataclasses.replace(settings, generation=dataclasses.replace(settings.generation, seed=seed))
        ledger.set_meta("targets", json.dumps(targets, sort_keys=True))
        ledger.set_meta("seed", str(seed))
        if from_metrics:
            ledger.set_meta("from_metrics", str(from_metrics))
        config_hash = _config_hash(domain, settings)
        previous = ledger.get_meta("config_hash")
        if previous is not None and previous != config_hash and not args.quiet:
            print(f"config changed since the last run ({previous} -> {config_hash}): finished items that still "
                  "match are kept; answers to prompts of the old config stay in staging and in the export "
                  "(--only-last-run leaves them out, --fresh starts over)", file=sys.stderr)
        ledger.set_meta("config_hash", config_hash)
        if args.command == "retry-failed":
            n = ledger.forget(("failed",))
            if not args.quiet:
                print(f"retrying {n} failed items", file=sys.stderr)
        done = ledger.finished_ids()
        todo = [it for it in items if it.item_id not in done]
        batch = int(ledger.get_meta("generation_batches") or 0) + 1
        ledger.set_meta("generation_batches", str(batch))
        ledger.set_meta("current_items", ",".join(sorted(it.item_id for it in items)))
        session_id = f"{_stamp()}-{hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:6]}"
        dedup = DuplicateIndex(settings.quality.near_duplicate_jaccard)
        for item_id, text in ledger.accepted_texts():  # every accepted answer is exported, so none may repeat
            dedup.add(item_id, text)
        if not args.quiet:
            pool = ", ".join(f"{s.name}/{m}" for s in specs for m in s.models)
            print(f"{len(items)} items ({len(items) - len(todo)} already finished, {len(todo)} to do) "
                  f"on {pool}", file=sys.stderr)
        stats = asyncio.run(_run(settings, backends, ledger, dedup, session_id, batch, todo, args.quiet,
                                 vocabulary, budget))
        ledger.flush_shards(force=True)
        if not args.quiet:
            reasons = "; ".join(f"{k} {v}" for k, v in sorted(stats.reasons.items(), key=lambda kv: -kv[1])[:5])
            print(f"accepted {stats.accepted}, rejected {stats.rejected}, failed {stats.failed} "
                  f"({stats.calls} server calls)" + (f"; reasons: {reasons}" if reasons else ""))
        if not args.no_export:
            _write(args, ledger, domain, settings, config_hash, session_id, stats.accepted)
    finally:
        ledger.close()
    if stats.stopped:
        print(f"python -m language: budget reached: {stats.stopped}; the items not asked are left for the next "
              "generate", file=sys.stderr)
        return EXIT_BUDGET
    if stats.failed:
        if not args.quiet:
            print(f"{stats.failed} items failed (see `python -m language status`); "
                  "`python -m language retry-failed` asks for them again", file=sys.stderr)
        return EXIT_PARTIAL
    return 0


def _work(args, domain, settings, specs, seed, ledger):
    """(targets, seed, --from-metrics path, work items, vocabulary, backends) of this run, all checked;
    `ledger` is the staging's for retry-failed (the work of the last generate), else None."""
    from .backends import build_backend
    from .items import build_items

    if ledger is None:
        targets, from_metrics = _targets(args, settings), getattr(args, "from_metrics", None)
    else:
        targets = json.loads(ledger.get_meta("targets") or "null")
        if not isinstance(targets, dict):
            raise LanguageError(f"retry-failed: no earlier generate in {ledger.dir}")
        seed = int(ledger.get_meta("seed") or seed)
        from_metrics = Path(ledger.get_meta("from_metrics")) if ledger.get_meta("from_metrics") else None
    backends = [build_backend(s) for s in specs]
    n_models = sum(len(s.models) for s in specs)
    grounded_count = targets.pop("metrics_explanation", 0) if from_metrics else 0
    items = build_items(domain, settings, targets, n_models=n_models, seed=seed)
    vocabulary = None
    if from_metrics:
        from .grounding import load_vocabulary, metric_sample_items
        vocabulary = load_vocabulary(args.config_dir)
        items += metric_sample_items(from_metrics, grounded_count, domain, settings.rotation.models_per_prompt,
                                     n_models, settings.fingerprint(), seed)
        targets["metrics_explanation"] = grounded_count
    return targets, seed, from_metrics, items, vocabulary, backends


async def _run(settings, backends, ledger, dedup, session_id, batch, todo, quiet, vocabulary=None, budget=None):
    from .scheduler import Runner

    progress = _Progress(quiet, len(todo))
    started = []
    try:
        for b in backends:
            await b.start()
            started.append(b)
        with progress:
            runner = Runner(settings, backends, ledger, dedup, session_id, batch, progress.advance, vocabulary,
                            budget)
            return await runner.run(todo)
    finally:
        for b in started:
            await b.close()


def _write(args, ledger, domain, settings, config_hash, session_id, new_samples):
    from .export import grounding_table, metadata, select_samples, write_exports
    from .usage import Prices, usage_summary

    samples = select_samples(ledger.samples(), types=_only_types(args),
                             items=_last_run_items(ledger) if getattr(args, "only_last_run", False) else None)
    pool = sorted({m for m in samples["model"].to_list()}) if len(samples) else []
    meta = metadata(samples, generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    session_id=session_id, config_hash=config_hash, new_samples=new_samples, model_pool=pool,
                    swap_interval=settings.rotation.swap_interval,
                    questions_processed=len(ledger.finished_ids()),
                    grounding=grounding_table(ledger.results_frame()),
                    usage=usage_summary(ledger.token_totals(), Prices.of_settings(settings)))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_exports(args.output_dir, meta, samples, domain.system_prompt,
                  allow_fewer=getattr(args, "allow_fewer", False))
    if not args.quiet:
        print(f"wrote {args.output_dir / 'language_dataset.json'} ({len(samples)} samples) and "
              f"{args.output_dir / 'language_dataset.chat.jsonl'}")


def _last_run_items(ledger) -> set[str]:
    return set((ledger.get_meta("current_items") or "").split(",")) - {""}


def _status(args) -> int:
    import polars as pl

    from .ledger import Ledger

    staging = _staging(args)
    if not (staging / "ledger.sqlite").exists():
        print(f"no staging at {staging}: nothing generated yet")
        return 0
    ledger = Ledger(staging)
    try:
        results = ledger.results_frame()
        attempts = ledger.attempts_frame()
        current = set((ledger.get_meta("current_items") or "").split(",")) - {""}
        print(f"staging {staging}: {len(results)} items finished, {len(attempts)} server calls, "
              f"config {ledger.get_meta('config_hash')}")
        if len(results):
            by_type = results.group_by("type", "status").len().pivot("status", index="type", values="len") \
                .fill_null(0).sort("type")
            print("\nper type:")
            print(_text_table(by_type))
            models = results.filter(pl.col("status") == "accepted").group_by("model").len() \
                .sort("len", "model", descending=[True, False]).rename({"len": "accepted"})
            print("\naccepted per model:")
            print(_text_table(models) if len(models) else "  none")
            from .export import grounding_table
            grounding = grounding_table(results)
            if grounding:
                print("\nagreement with the simulator's labels (grounded metrics explanations):")
                for model, g in grounding.items():
                    print(f"  {model}: {g['agreed']} of {g['checked']} ({100 * g['rate']:.0f} %)")
            bad = results.filter(pl.col("status") != "accepted").group_by("status", "reason").len() \
                .sort("len", "reason", descending=[True, False]).rename({"len": "items"}) \
                .select("items", "status", "reason").head(15)
            if len(bad):
                print("\nrejections and failures (most frequent first):")
                print(_text_table(bad))
        from .usage import status_usage
        usage, notes = status_usage(ledger, None if args.config_dir is None else args.config_dir / "models.yaml")
        if len(usage):
            print("\ntokens and cost per model (every call in this staging, at the prices in models.yaml):")
            print(_text_table(usage))
        if notes:
            print("\n" + "\n".join(notes))
        if current:
            print(f"\n{len(current - set(results['item_id'].to_list()) if len(results) else current)} of "
                  f"{len(current)} items of the last generate still to do")
        bad = ledger.damaged_shards()
        if bad:
            print(f"\nDAMAGED shards: {', '.join(bad)} (python -m language restore rebuilds them from the ledger)")
        intact = _check_exports(args.output_dir) and not bad
    finally:
        ledger.close()
    return 0 if intact else 1


def _text_table(frame) -> str:
    """A small frame as aligned plain text (no truncated cells, nothing but the values)."""
    rows = [[str(c) for c in frame.columns]] + [["-" if v is None else str(v) for v in r] for r in frame.iter_rows()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(frame.columns))]
    return "\n".join("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def _check_exports(output_dir: Path) -> bool:
    from .export import check_language_dataset

    path = output_dir / "language_dataset.json"
    problem = check_language_dataset(path)
    if problem == "missing":
        return True
    if problem is None:
        print(f"\n{path}: intact")
        return True
    print(f"\n{path}: CORRUPTED: {problem} (python -m language restore, or export to rewrite it from staging)")
    return False


def _restore(args) -> int:
    from datasafe.integrity import restore_latest

    from .export import check_language_dataset
    from .ledger import Ledger

    staging = _staging(args)
    if (staging / "ledger.sqlite").exists():
        ledger = Ledger(staging)
        try:
            bad = ledger.damaged_shards()
            if bad:
                n = ledger.rebuild_shards(bad)
                print(f"rebuilt {len(bad)} damaged shards ({n} samples) from the ledger")
        finally:
            ledger.close()
    target = args.output_dir / "language_dataset.json"
    problem = check_language_dataset(target)
    if problem in (None, "missing"):
        print(f"{target}: {'intact' if problem is None else 'not written yet'}; nothing to restore")
        return 0
    try:
        backup, kept = restore_latest(target, check_language_dataset)
    except FileNotFoundError:
        raise LanguageError(f"restore: {target} has no intact backup; run `python -m language export` to "
                            "rewrite it from staging") from None
    print(f"restored {target} from {backup.name}" + (f"; the damaged file is kept as {kept.name}" if kept else ""))
    return 0


def _export(args) -> int:
    from .ledger import Ledger

    domain, settings = _load(args)
    staging = _staging(args)
    if not (staging / "ledger.sqlite").exists():
        raise LanguageError(f"no staging at {staging}: run generate first")
    ledger = Ledger(staging)
    try:
        _write(args, ledger, domain, settings, ledger.get_meta("config_hash") or "", "export", 0)
    finally:
        ledger.close()
    return 0


def _reset(args) -> int:
    staging = _staging(args)
    if not staging.exists():
        print(f"nothing to reset at {staging}")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise LanguageError("reset: refusing without --yes (no terminal to ask)")
        answer = input(f"move {staging} to a backup and start over? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 0
    backup = staging.with_name(f"{STAGING_NAME}.{_stamp()}.bak")
    shutil.move(str(staging), str(backup))
    print(f"staging moved to {backup}")
    return 0


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


class _Progress:
    """A rich progress bar with rate and ETA on a terminal; nothing otherwise."""

    def __init__(self, quiet: bool, total: int):
        self.enabled = not quiet and sys.stderr.isatty() and total > 0
        self.total, self.bar, self.task = total, None, None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            self.bar = Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(),
                                TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("generate", total=self.total)
        return self

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


if __name__ == "__main__":
    sys.exit(main())
