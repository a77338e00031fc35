"""Command line: `python -m language generate|status|report|retry-failed|export|restore|reset`."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from pathlib import Path

from datasafe.errors import configure_logging

from .errors import LanguageError, UserError, one_line
from .pipeline import STAGING_NAME, stamp

COMMANDS = ("generate", "status", "report", "retry-failed", "export", "reset", "restore")
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
                            "(repeatable; with --models; replaces the YAML backends unless --backend is given; it takes "
                            "the keep_alive models.yaml gives a backend of its type)")
        p.add_argument("--models", default=None, help="comma-separated model names for --endpoint servers")
        p.add_argument("--api-key-env", default=None,
                       help="environment variable holding the API key for --endpoint servers")
        p.add_argument("--concurrency", type=int, default=None, help="requests in flight per endpoint")
        p.add_argument("--no-stream", action="store_true",
                       help="ask Ollama and Anthropic servers for each answer as one JSON object instead of a "
                            "stream of chunks or events (the other backends always get one answer at once)")
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
        p.add_argument("--chat-structured", action="store_true",
                       help="in the chat JSONL, a structured (grounded) answer is its JSON object (default: its "
                            "explanation text; the dataset JSON holds both)")

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
    gen.add_argument("--normal-share", type=float, default=None, metavar="SHARE",
                     help="share of normal samples among the --from-metrics prompts, 0 to 1; the rest is spread "
                          "evenly over the anomaly kinds present (default: grounding.normal_share of models.yaml, 0.5)")
    selection(gen)
    retry = sub.add_parser("retry-failed", help="forget failed items and generate them again")
    common(retry, True)
    selection(retry)
    common(sub.add_parser("status", help="completion per type, failures, model distribution"), False)
    common(sub.add_parser("report", help="answer quality per type and model: rejections by reason, distinct-2, "
                                         "near duplicates, length, verifier agreement, relevance, judge scores"),
           False)
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
        return {"status": _status, "report": _report, "export": _export, "reset": _reset, "restore": _restore}[args.command](args)
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
    from .pipeline import backend_specs

    return backend_specs(settings, names=args.backend, endpoints=args.endpoint, models=args.models,
                         api_key_env=args.api_key_env, concurrency=args.concurrency, stream=not args.no_stream)


# ---------------------------------------------------------------------------- commands
def _generate(args) -> int:
    from . import pipeline
    from .ledger import Ledger
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
        targets = {} if retry else pipeline.choose_targets(settings, types=args.types, count=args.count)
        work = pipeline.plan_work(domain, settings, specs, targets=targets, seed=seed,
                                  from_metrics=getattr(args, "from_metrics", None), config_dir=args.config_dir,
                                  ledger=ledger, normal_share=getattr(args, "normal_share", None))
    except BaseException:
        if ledger is not None:
            ledger.close()
        raise
    if getattr(args, "fresh", False) and staging.exists():
        backup = staging.with_name(f"{STAGING_NAME}.{stamp()}.bak")
        staging.rename(backup)
        if not args.quiet:
            print(f"previous staging kept as {backup}", file=sys.stderr)
    if ledger is None:
        ledger = Ledger(staging)
    try:
        session = pipeline.open_session(ledger, domain, settings, work, retry=retry)
        if not args.quiet:
            _print_session(session, work, specs, retry)
        with _Progress(args.quiet, len(session.todo)) as progress:
            stats = asyncio.run(pipeline.run_session(ledger, work, session, advance=progress.advance, budget=budget))
        if not args.quiet:
            reasons = "; ".join(f"{k} {v}" for k, v in sorted(stats.reasons.items(), key=lambda kv: -kv[1])[:5])
            print(f"accepted {stats.accepted}, rejected {stats.rejected}, failed {stats.failed} "
                  f"({stats.calls} server calls)" + (f"; reasons: {reasons}" if reasons else ""))
            if stats.judge_failures:
                print(f"the judge model could not score {stats.judge_failures} answers (why: the ledger's judge "
                      "column); they are kept unjudged unless judge.required is set")
        if not args.no_export:
            _write(args, ledger, domain=domain, settings=session.settings, config_hash=session.config_hash,
                   session_id=session.session_id, new_samples=stats.accepted)
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


def _print_session(session, work, specs, retry: bool) -> None:
    if session.previous_hash is not None and session.previous_hash != session.config_hash:
        print(f"config changed since the last run ({session.previous_hash} -> {session.config_hash}): finished "
              "items that still match are kept; answers to prompts of the old config stay in staging and in the "
              "export (--only-last-run leaves them out, --fresh starts over)", file=sys.stderr)
    if retry:
        print(f"retrying {session.retried} failed items", file=sys.stderr)
    pool = ", ".join(f"{s.name}/{m}" for s in specs for m in s.models)
    n, todo = len(work.items), len(session.todo)
    print(f"{n} items ({n - todo} already finished, {todo} to do) on {pool}", file=sys.stderr)
    print(f"free-text gates: {session.dedup.free_text.describe()}", file=sys.stderr)


def _write(args, ledger, *, domain, settings, config_hash, session_id, new_samples):
    from .pipeline import export

    n = export(ledger, domain, settings, args.output_dir, config_hash=config_hash, session_id=session_id,
               new_samples=new_samples, only_types=_only_types(args),
               only_last_run=getattr(args, "only_last_run", False), allow_fewer=getattr(args, "allow_fewer", False),
               chat_structured=getattr(args, "chat_structured", False))
    if not args.quiet:
        print(f"wrote {args.output_dir / 'language_dataset.json'} ({n} samples) and "
              f"{args.output_dir / 'language_dataset.chat.jsonl'}")


def _status(args) -> int:
    from .pipeline import status_report

    report = status_report(args.output_dir, None if args.config_dir is None else args.config_dir / "models.yaml")
    if report is None:
        print(f"no staging at {_staging(args)}: nothing generated yet")
        return 0
    print(f"staging {report.staging}: {report.finished} items finished, {report.calls} server calls, "
          f"config {report.config_hash}")
    if report.finished:
        print("\nper type:")
        print(_text_table(report.per_type))
        print("\naccepted per model:")
        print(_text_table(report.per_model) if len(report.per_model) else "  none")
        if report.grounding:
            print("\nagreement with the simulator's labels (grounded metrics explanations):")
            for model, g in report.grounding.items():
                print(f"  {model}: {g['agreed']} of {g['checked']} ({100 * g['rate']:.0f} %)")
        if len(report.problems):
            print("\nrejections and failures (most frequent first):")
            print(_text_table(report.problems))
    if len(report.usage):
        print("\ntokens and cost per model (every call in this staging, at the prices in models.yaml):")
        print(_text_table(report.usage))
    if report.notes:
        print("\n" + "\n".join(report.notes))
    if report.last_run_items:
        print(f"\n{report.last_run_left} of {report.last_run_items} items of the last generate still to do")
    if report.damaged_shards:
        print(f"\nDAMAGED shards: {', '.join(report.damaged_shards)} (python -m language restore rebuilds them "
              "from the ledger)")
    intact = _check_exports(args.output_dir) and not report.damaged_shards
    return 0 if intact else 1


def _report(args) -> int:
    import polars as pl

    from .pipeline import quality_report

    report = quality_report(args.output_dir)
    if report is None:
        print(f"no staging at {_staging(args)}: nothing generated yet")
        return 0
    print(f"staging {report.staging}: answer quality per type and model (model (all): every model's answers)")
    if not report.figures:
        print("  no answers yet")
        return 0
    rows = [(t, m, f) for t, models in report.figures.items() for m, f in models.items()]
    print(_text_table(pl.DataFrame([_quality_row(t, m, f) for t, m, f in rows], orient="row",
                                   schema=list(QUALITY_COLUMNS), infer_schema_length=None)))
    reasons = [(t, m, r, n) for t, m, f in rows for r, n in f["rejected_by_reason"].items()]
    print("\nrejections by reason:")
    print(_text_table(pl.DataFrame(reasons, orient="row", schema=["type", "model", "reason", "rejected"]))
          if reasons else "  none")
    return 0


QUALITY_COLUMNS = ("type", "model", "answers", "accepted", "rejected", "failed", "distinct-2", "near-dup",
                   "words p10/median/p90", "verifier", "relevance", "judge")


def _quality_row(sample_type: str, model: str, f: dict) -> tuple:
    """One line of the report: the figures of quality_figures, "-" where there are none."""
    words, verifier, judge = f["words"], f["verifier"], f["judge"]
    return (sample_type, model, f["answers"], f["accepted"], f["rejected"], f["failed"], _share(f["distinct_2"]),
            _share(f["near_duplicate_rate"]),
            None if words is None else f"{words['p10']:g}/{words['median']:g}/{words['p90']:g}",
            None if verifier is None else f"{verifier['accepted']}/{verifier['judged']} ({_share(verifier['rate'])})",
            None if f["relevance"] is None else " ".join(f"{g}={r['mean']:.3f}" for g, r in f["relevance"].items()),
            None if judge is None else " ".join(f"{c}={v:.2f}" for c, v in judge["mean"].items()))


def _share(rate: float | None) -> str | None:
    return None if rate is None else f"{rate:.3f}"


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
        _write(args, ledger, domain=domain, settings=settings, config_hash=ledger.get_meta("config_hash") or "",
               session_id="export", new_samples=0)
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
    backup = staging.with_name(f"{STAGING_NAME}.{stamp()}.bak")
    shutil.move(str(staging), str(backup))
    print(f"staging moved to {backup}")
    return 0


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
