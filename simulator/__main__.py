"""Command line: `python -m simulator --samples 20000` and `python -m simulator traces ...`."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import sys
import time
from pathlib import Path

from datasafe.errors import configure_logging

from .errors import SimulatorError, UserError, one_line

DATASET_NAME = "metrics_dataset.json"
SUBCOMMANDS = ("generate", "traces", "cases", "realism", "evaluate", "status", "restore")
TOP_LEVEL_OPTIONS = ("-h", "--help", "--version")
PACKAGE = "monitoring-datafactory"
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a program a closed pipe stopped (141)


def version_text() -> str:
    """`simulator <version>` of the installed package (the source tree's version when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"simulator {version(PACKAGE)}"
    except PackageNotFoundError:
        from . import __version__
        return f"simulator {__version__}"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, exit status 2 and no abbreviated options (`--sample` is no `--samples`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


class _TopParser(_Parser):
    """The top-level parser; its --help shows the options of the default 'generate' command first."""

    default_command: argparse.ArgumentParser | None = None

    def format_help(self) -> str:
        formatter = self._get_formatter()
        formatter.add_usage(self.usage, self._actions, self._mutually_exclusive_groups)
        formatter.add_text(self.description)
        if self.default_command is not None:
            formatter.start_section("generate, the default command (the word may be omitted)")
            formatter.add_arguments([a for a in self.default_command._actions
                                     if not isinstance(a, argparse._HelpAction)])
            formatter.end_section()
        for group in self._action_groups:
            formatter.start_section(group.title)
            formatter.add_text(group.description)
            formatter.add_arguments(group._group_actions)
            formatter.end_section()
        formatter.add_text(self.epilog)
        return formatter.format_help()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (default: simulation.seed in the config); same seed and config, same output")
    p.add_argument("--config", type=Path, default=None,
                   help="metrics config YAML (default: the shipped data_config/metrics.yaml)")
    p.add_argument("--workers", type=int, default=None,
                   help="threads for the kernels (default: all cores); the output does not depend on it")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def _trace_shape(p: argparse.ArgumentParser) -> None:
    """The options of a run of whole traces: how many hosts, steps, how often, how many events."""
    p.add_argument("--hosts", type=int, required=True, help="number of hosts")
    p.add_argument("--steps", type=int, required=True, help="time steps per host")
    p.add_argument("--interval-s", type=float, default=None,
                   help="seconds between steps (default: simulation.interval_s, 300)")
    p.add_argument("--anomalies", type=int, default=None, help="anomaly events in all (default: one per host)")


def build_parser() -> argparse.ArgumentParser:
    parser = _TopParser(
        prog="python -m simulator",
        usage="%(prog)s [generate] [--samples N] [--anomaly-ratio R] [--output-dir DIR] [--seed S] [...]\n"
              "       %(prog)s {traces,realism,status,restore} [options]  (see %(prog)s COMMAND --help)",
        description="Simulate labelled server metrics (CPU, memory, disk, load, JVM, Spectrum Conductor "
                    "jobs, vemkd, network) of an IBM Spectrum Conductor cluster and export training data.",
        epilog="Subcommands: 'generate' (the default, may be omitted) writes the training JSON; "
               "'traces' exports full traces for anomaly detectors; 'realism' measures the simulation "
               "against real hosts. Run 'python -m simulator <command> --help' for their options.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, title="commands", metavar="COMMAND",
                                prog="python -m simulator")
    gen = sub.add_parser("generate", help="write <output-dir>/metrics_dataset.json (default command)",
                         description="Generate labelled samples, stage them as Parquet under "
                                     "<output-dir>/staging/ and export <output-dir>/metrics_dataset.json "
                                     "(the previous file is kept as a timestamped backup, last three).")
    gen.add_argument("--samples", type=int, default=20000, metavar="N", help="number of samples (default 20000)")
    gen.add_argument("--anomaly-ratio", type=float, default=None, metavar="R",
                     help="share of anomalous samples, 0..1 (default: simulation.anomaly_ratio, 0.2)")
    gen.add_argument("--output-dir", type=Path, default=Path("training"), metavar="DIR",
                     help="where the dataset and staging/ go (default: training)")
    gen.add_argument("--context-steps", type=int, default=None,
                     help="readings before each sample, at the native interval, that the sample carries "
                          "(default: simulation.context_steps, 12 = the last hour at 5 minutes)")
    gen.add_argument("--hard-negatives", type=float, default=None, metavar="SHARE",
                     help="share of the normal samples taken at each block's busiest healthy moments, flagged "
                          "targets.hard_negative (default: simulation.hard_negative_share, 0)")
    gen.add_argument("--format", action="append", default=None, metavar="FORMATS",
                     help="json (default: metrics_dataset.json), parquet, jsonl; repeat or comma-separate for "
                          "several. parquet/jsonl write <output-dir>/metrics_dataset/: splits by host, chat JSONL "
                          "and a dataset card that datasets.load_dataset reads")
    gen.add_argument("--splits", default=None, metavar="TRAIN/VALIDATION/TEST",
                     help="shares of hosts in the train/validation/test splits of --format parquet/jsonl "
                          "(default 80/10/10); no host is in two splits")
    gen.add_argument("--logs", action="store_true",
                     help="also stage the hosts' log lines (journal, vemkd, scheduler, JVM GC) and the alerts of "
                          "data_config/alert_rules.yaml as staging/logs/ and staging/alerts/ (off by default: about "
                          "2,400 lines and 33 KB of Parquet per sample, roughly 10x the time of a run without)")
    _common(gen)
    tr = sub.add_parser("traces", help="export full labelled traces as Parquet or CSV, or sharded on a cluster",
                        description="Export traces of H hosts over T steps with their labels. CSV uses the "
                                    "layout detectors read: timestamp, one column per metric, is_anomaly "
                                    "(one file, hosts one after another, with a host column). An --output "
                                    "without a .parquet/.csv suffix is a directory: the job is cut into "
                                    "host ranges x time chunks, one Parquet part each, plus events parts and "
                                    "manifest.json; the bytes are the same on any engine and worker count.")
    _trace_shape(tr)
    tr.add_argument("--anomaly-share", type=float, default=None, metavar="S",
                    help="share of anomalous points (hosts x steps), 0..0.5: event counts and durations are "
                         "sized to the trace at any interval and length (default: simulation.trace_anomaly_share, "
                         "0.02; not with --anomalies)")
    tr.add_argument("--output", type=Path, required=True,
                    help="output file (.parquet or .csv) or directory without suffix (sharded Parquet parts)")
    tr.add_argument("--engine", choices=("local", "dask"), default=None,
                    help="sharded jobs: 'local' (this process, the default) or 'dask' (a dask.distributed "
                         "cluster; pip install -e \".[dask]\"); --workers sets the LocalCluster's processes")
    tr.add_argument("--scheduler", default=None,
                    help="with --engine dask: address of a running scheduler, e.g. tcp://10.0.0.5:8786 "
                         "(default: a LocalCluster on 127.0.0.1); --output must be a path every worker sees")
    tr.add_argument("--shard-hosts", type=int, default=None,
                    help="hosts per part (default: 64, fewer when a part would need over 256 MB of memory)")
    tr.add_argument("--shard-steps", type=int, default=None,
                    help="time steps per part (default: 8640, 30 days at 5 minutes); the host state "
                         "carries across chunks, each chunk has its own events")
    _common(tr)
    cs = sub.add_parser("cases", help="incidents with their logs and alerts, one folder per case (RCA tools' layout)",
                        description="Simulate H hosts over T steps with their log streams (journal, vemkd, "
                                    "scheduler, JVM GC) and alert rules (data_config/log_templates.yaml, "
                                    "alert_rules.yaml), then write one folder per incident (data.csv, logs.csv, "
                                    "alerts.csv, inject_time.txt, case.json) plus no-fault cases, and cases.csv.")
    _trace_shape(cs)
    cs.add_argument("--anomaly-share", type=float, default=None, metavar="S",
                    help="share of anomalous points (hosts x steps), 0..0.5, events sized to the trace as in "
                         "`traces` (default: --anomalies' default, one event per host; not with --anomalies)")
    cs.add_argument("--output", type=Path, required=True, help="the cases folder")
    cs.add_argument("--no-fault-share", type=float, default=0.2,
                    help="share of the cases that are windows without a fault (default 0.2)")
    cs.add_argument("--log-files", action="store_true",
                    help="also write the plain log files per host and source under <output>/logs/")
    _common(cs)
    re = sub.add_parser("realism", help="measure simulated hosts against real ones (NAB); table and plots",
                        description="Simulate a population of hosts for 14 days at 5 minutes and compare each "
                                    "metric's realism signature (computed by the reference's signature.py) "
                                    "with the range real hosts of that kind show, by the median over hosts "
                                    "and per host (share inside, worst host); tables memory, load, network "
                                    "and (at 1 s) heap and GC per profile with their sources, and tracks "
                                    "batch-job heights and memory drift. Prints the tables, writes PNG plots "
                                    "and realism_report.json to --output-dir; exits 1 when a median is out "
                                    "of the real range.")
    re.add_argument("--hosts", type=int, default=60, help="simulated hosts (default 60)")
    re.add_argument("--output-dir", type=Path, default=Path("training") / "realism",
                    help="where plots and realism_report.json go (default: training/realism)")
    re.add_argument("--reference", type=Path, default=None,
                    help="folder with signature.py and nab/ (default: $SIMULATOR_REFERENCE, else "
                         "../shared/reference beside the project)")
    re.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    re.add_argument("--discriminative", action="store_true",
                    help="also train classifiers to tell real from simulated CPU windows and report "
                         "their accuracy (needs scikit-learn: pip install -e \".[bench]\")")
    _common(re)
    st = sub.add_parser("status", help="is the dataset whole, does the staging match it, which backups exist",
                        description="Check <output-dir>/metrics_dataset.json (valid JSON, sample count, ids), "
                                    "<output-dir>/staging/ (every file against its manifest checksum) and that both "
                                    "come from the same run (session, config hash, seed, sample count); exit 1 "
                                    "when something is damaged or they come from different runs.")
    st.add_argument("--output-dir", type=Path, default=Path("training"), help="default: training")
    rs = sub.add_parser("restore", help="replace a damaged dataset with its newest intact backup",
                        description="Replace <output-dir>/metrics_dataset.json with its newest backup that passes "
                                    "the checks; the damaged file is kept as metrics_dataset.<time>.damaged.json.")
    rs.add_argument("--output-dir", type=Path, default=Path("training"), help="default: training")
    _add_evaluate(sub)
    parser.default_command = gen
    return parser


def _add_evaluate(sub) -> None:
    ev = sub.add_parser("evaluate", help="learnability report: can a model learn the labels; transfer to real CPU",
                        description="Generate a dataset in memory, train a reference learner (gradient-boosted "
                                    "trees) split by host, and print per-kind precision, recall and F1 with "
                                    "snapshot-only and with context features, the confusion matrices and the "
                                    "targets of issue 15; then fit a CPU detector on simulated normal hosts and "
                                    "score it on NAB's labelled real CPU files against the same detector fit on "
                                    "real files. Writes <output-dir>/learnability_report.json. Needs "
                                    "scikit-learn: pip install -e \".[evaluate]\".")
    ev.add_argument("--samples", type=int, default=20000, help="number of samples (default 20000)")
    ev.add_argument("--output-dir", type=Path, default=Path("training"),
                    help="where learnability_report.json goes (default: training)")
    ev.add_argument("--reference", type=Path, default=None,
                    help="folder with signature.py and nab/ for the transfer check (default: "
                         "$SIMULATOR_REFERENCE, else ../shared/reference beside the project)")
    ev.add_argument("--strict", action="store_true", help="exit 1 when a target fails (default: exit 0)")
    _common(ev)


def _evaluate(args) -> int:
    from .evaluate import REPORT_NAME, all_passed, evaluate, format_report
    from datasafe import atomic_write_json
    from .realism.reference import default_reference_dir

    if args.samples < 1:
        raise SimulatorError(f"--samples: must be at least 1, got {args.samples}")
    out_dir = _output_dir(args.output_dir, files=(REPORT_NAME,), folders=())
    if args.reference is not None and not (args.reference / "nab").is_dir():
        raise SimulatorError(f"--reference: {args.reference} has no nab/ folder")
    reference = args.reference or default_reference_dir()
    report = evaluate(args.samples, seed=args.seed, config=args.config, workers=args.workers,
                      reference_dir=reference if (reference / "nab").is_dir() else None,
                      stage=_stages(args.quiet, "evaluate"))
    print(format_report(report))
    path = out_dir / REPORT_NAME
    atomic_write_json(path, report)
    if not args.quiet:
        print(f"\nwrote {path}", file=sys.stderr)
    return 1 if args.strict and not all_passed(report) else 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a reader that closes the pipe early (`| head -1`) ends it quietly."""
    try:
        try:
            return _main(list(sys.argv[1:] if argv is None else argv))
        finally:  # also after --help and --version (argparse exits): a closed pipe shows here
            sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not fail again at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # not a file (tests capture it in memory)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _main(argv: list[str]) -> int:
    if argv and not argv[0].startswith("-") and argv[0] not in SUBCOMMANDS:
        _Parser(prog="python -m simulator").error(
            f"unknown command {argv[0]!r}; the commands are {', '.join(SUBCOMMANDS)} "
            "(generate is the default: python -m simulator --samples N)")
    if not argv or argv[0] not in (*SUBCOMMANDS, *TOP_LEVEL_OPTIONS):
        argv = ["generate", *argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging("python -m simulator", "simulator")
    try:
        if args.command == "traces":
            return _traces(args)
        if args.command == "cases":
            return _cases(args)
        if args.command == "realism":
            return _realism(args)
        if args.command == "status":
            return _status(args)
        if args.command == "restore":
            return _restore(args)
        if args.command == "evaluate":
            return _evaluate(args)
        return _generate(args)
    except UserError as exc:
        print(f"python -m simulator: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # the reader of stdout went away: `main` ends quietly
    except OSError as exc:  # the output could not be written (disk full, permissions, ...)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"python -m simulator: error: {one_line(where + (exc.strerror or str(exc)))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("python -m simulator: interrupted; earlier outputs are unchanged", file=sys.stderr)
        return 130


def _quiet_idle_threads() -> None:
    """Idle worker threads that wait by spinning hold a core the threads with work need (the sample job
    overlaps numba kernels, Polars and the staging writer on few cores): numba's OpenMP workers go to
    sleep once their share is done, and OpenBLAS (unused here) starts no threads. Set before numpy
    and numba load, which read them then; a value set in the environment is kept."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


# Modules the sample job's imports would load for nothing: numba imports scipy.linalg (0.14 s, with
# numpy.f2py) only to learn whether np.dot may call BLAS; no kernel of the package uses BLAS. Numba
# then takes BLAS as absent for the run (np.correlate/np.convolve would loop instead), and imports
# it as usual should a kernel compiled later call np.dot.
UNUSED_IMPORTS = ("scipy.linalg",)


@contextlib.contextmanager
def _importing():
    """The sample job's imports (numba, LLVM, Polars: about 200,000 objects that live to the end of the
    program, none of them garbage) without the garbage collector, which would traverse them again
    and again while they are made (0.07 s); run as a program, they are frozen afterwards, so that the
    job's own collections leave them alone, and UNUSED_IMPORTS are kept out while they run."""
    enabled = gc.isenabled()
    kept_out = [m for m in UNUSED_IMPORTS if _PROGRAM and m not in sys.modules]
    for module in kept_out:
        sys.modules[module] = None  # an import of it fails (ImportError) instead of loading it
    gc.disable()
    try:
        yield
    finally:
        for module in kept_out:
            if module in sys.modules and sys.modules[module] is None:
                del sys.modules[module]
        if _PROGRAM:
            gc.freeze()
        if enabled:
            gc.enable()


def _generate(args) -> int:
    _quiet_idle_threads()
    with _importing():
        from ._ahead import start as compile_ahead
        from .api import generate_samples
        from .config import load_config
        from .export import write_metrics_dataset
        from .trainsets import OWNED_FOLDERS, parse_formats, parse_shares, write_training_folder

    formats, shares = parse_formats(args.format), parse_shares(args.splits)
    out_dir = _output_dir(args.output_dir, folders=STAGING_FOLDERS + OWNED_FOLDERS)
    config = load_config(args.config)
    started = time.perf_counter()
    # on a cold numba cache, the kernels needed after the simulation compile in a second process meanwhile
    with compile_ahead(["sampling", "context", "evidence"] + ["json"] * ("json" in formats)) as ahead:
        with _progress(args.quiet, "simulating hosts") as progress:
            result = generate_samples(args.samples, anomaly_ratio=args.anomaly_ratio, seed=args.seed,
                                      config=config, workers=args.workers, staging_dir=out_dir,
                                      context_steps=args.context_steps, hard_negatives=args.hard_negatives,
                                      logs=args.logs, progress=progress, background_staging=True,
                                      before_sampling=lambda: ahead.wait_for("evidence"))
        target = out_dir / DATASET_NAME
        if "json" in formats:
            ahead.wait_for("json")
        try:  # the staging is written while the JSON is encoded; the JSON replaces the old one only after it
            backup = (write_metrics_dataset(target, result.metadata, result.samples, before_commit=result.wait_staged)
                      if "json" in formats else None)
        except BaseException:  # the export's own error is the one to report; the staging still finishes first
            with contextlib.suppress(Exception):
                result.wait_staged()
            raise
    result.wait_staged()
    folder = write_training_folder(out_dir, result.samples, result.metadata, result.config, formats=formats,
                                   shares=shares)
    if not args.quiet:
        stats = result.metadata["generation_stats"]
        kinds = ", ".join(f"{k} {n}" for k, n in stats["anomaly_types"].items() if n)
        wrote = ", ".join([str(target)] * ("json" in formats) + ([f"{folder.path}/"] if folder else []))
        print(f"wrote {wrote}: {result.metadata['total_samples']} samples, {stats['normal_samples']} normal, "
              f"{stats['anomaly_samples']} anomalous ({kinds}) in {time.perf_counter() - started:.2f} s"
              + (f"; previous dataset kept as {backup.name}" if backup else ""))
        if args.logs:
            _print_staged_logs(out_dir / "staging")
        if folder is not None:
            print(f"{folder.path}/ ({', '.join(folder.formats)}, chat JSONL, README.md): "
                  + ", ".join(f"{s} {v['samples']} samples of {v['hosts']} host{'s' * (v['hosts'] != 1)}"
                            for s, v in folder.splits.items()))
    return 0


def _print_staged_logs(staging: Path) -> None:
    """The log lines and alerts per rule a run with --logs staged (from its manifest)."""
    import orjson

    manifest = orjson.loads((staging / "manifest.json").read_bytes())
    tables = manifest["tables"]
    print(f"{staging}/logs/: {tables['logs']['rows']:,} log lines; {staging}/alerts/: {tables['alerts']['rows']:,} "
          "alerts; per rule:")
    for rule, counts in manifest["alerts_per_rule"].items():
        print(f"  {rule}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def _cases(args) -> int:
    from .cases import simulate_cases
    from .config import load_config

    started = time.perf_counter()
    config = load_config(args.config)
    share = _anomaly_share(args, None)
    result = simulate_cases(args.output, args.hosts, args.steps, seed=args.seed, config=config,
                            anomalies=args.anomalies, anomaly_share=share, interval_s=args.interval_s,
                            no_fault_share=args.no_fault_share, log_files=args.log_files, workers=args.workers)
    if not args.quiet:
        index = result["cases"]
        faults = int((index["label"] == "fault").sum()) if len(index) else 0
        print(f"wrote {args.output}: {faults} fault cases, {len(index) - faults} no-fault cases, "
              f"{result['log_lines']:,} log lines, in {time.perf_counter() - started:.2f} s")
        print("alerts per rule:")
        summary = result["alerts"].summary
        for row in summary.iter_rows(named=True):
            print("  " + ", ".join(f"{k} {v}" for k, v in row.items()))
        print(f"incidents no rule caught: {len(result['alerts'].missed)} of {result['events']}")
        print(_share_text(result["anomaly_share"], share))
    return 0


def _realism(args) -> int:
    from .api import checked_seed, worker_threads
    from .config import load_config
    from .realism.reference import default_reference_dir
    from .realism.report import REPORT_NAME, format_discriminative, format_report, report_json, run_realism
    from datasafe import atomic_write_json

    if args.hosts < 2:
        raise SimulatorError(f"--hosts: must be at least 2, got {args.hosts}")
    out_dir = _output_dir(args.output_dir, files=("*.png", REPORT_NAME), folders=())
    config = load_config(args.config)
    seed = checked_seed(config, args.seed)
    reference = args.reference or default_reference_dir()
    stage = _stages(args.quiet, "realism")
    with worker_threads(args.workers):
        result = run_realism(config, args.hosts, seed, reference, stage=stage)
        score = None
        if args.discriminative:
            from .realism.discriminative import discriminative_score
            stage("discriminative score: classifiers telling real CPU days from simulated ones")
            score = discriminative_score(config, reference, seed, hosts=args.hosts)
    print(format_report(result))
    if score is not None:
        print("\n" + format_discriminative(score))
    path = out_dir / REPORT_NAME
    atomic_write_json(path, report_json(result, seed=seed, hosts=args.hosts, reference=reference, score=score))
    if not args.no_plots:
        from .realism.plots import write_plots
        paths = write_plots(result, out_dir, config.simulation.interval_s)
        if not args.quiet:
            print(f"\nwrote {', '.join(str(p) for p in paths)} and {path}")
    return 0 if result.passed else 1


def _status(args) -> int:
    from .integrity import describe
    from .staging import recover_staging

    if args.output_dir.is_dir() and recover_staging(args.output_dir):
        print("staging/: a swap interrupted by a crash was completed (the previous staging is back)")
    lines, ok = describe(args.output_dir, DATASET_NAME)
    print("\n".join(lines))
    return 0 if ok else 1


def _restore(args) -> int:
    from .integrity import check_metrics_dataset, dataset_staging_differences, restore_metrics_dataset

    target = _output_dir(args.output_dir) / DATASET_NAME
    problem = check_metrics_dataset(target)
    if problem is None:
        print(f"{target} is intact; nothing to restore")
        return 0
    try:
        backup, kept = restore_metrics_dataset(target)
    except FileNotFoundError:
        raise SimulatorError(f"restore: {target} has no intact backup; rerun generate") from None
    print(f"restored {target} from {backup.name}" + (f"; the damaged file is kept as {kept.name}" if kept else ""))
    differences = dataset_staging_differences(target, target.parent / "staging")
    if differences:
        print(f"note: {target.name} now comes from another run than staging/ ({', '.join(differences)}); "
              "rerun generate to rebuild both")
    return 0


MAX_TRACE_DIMENSION = 10**9  # hosts or steps: 1e18 values would already need exabytes; keeps the arithmetic exact


def _traces(args) -> int:
    from .api import count_text
    from .tracefile import SUFFIXES, disk_problem, events_path, write_trace_file

    suffix = args.output.suffix.lower()
    sharded = args.output.is_dir() or not suffix
    if not sharded and suffix not in SUFFIXES:
        raise SimulatorError(f"--output: {args.output} must end in .parquet or .csv, or be a directory "
                             "(no suffix) for sharded parts")
    if not sharded and any(v is not None for v in (args.engine, args.scheduler, args.shard_hosts, args.shard_steps)):
        raise SimulatorError(f"--output: {args.output} is one file; --engine, --scheduler and --shard-* "
                             "need a directory (an --output without .parquet/.csv)")
    for name in ("hosts", "steps"):
        value = getattr(args, name)
        if not 1 <= value <= MAX_TRACE_DIMENSION:
            raise SimulatorError(f"--{name}: must be between 1 and {MAX_TRACE_DIMENSION:,}, got {count_text(value)}")
    # the folder the trace file (and its events beside it) or the sharded directory goes into
    _output_dir(args.output.parent, files=() if sharded else (args.output.name, events_path(args.output).name),
                folders=(), option="--output")
    problem = disk_problem(args.output, args.hosts, args.steps, ".parquet" if sharded else suffix)
    if problem:
        raise SimulatorError(f"--output: {problem}; use fewer --hosts or --steps")
    if sharded:
        return _sharded_traces(args)
    from .api import checked_seed
    from .config import load_config

    config = load_config(args.config)
    share = _anomaly_share(args, config.simulation.trace_anomaly_share)
    with _progress(args.quiet, "simulating hosts") as progress:
        written = write_trace_file(args.output, args.hosts, args.steps, config=config,
                                   seed=checked_seed(config, args.seed), anomalies=args.anomalies,
                                   anomaly_share=share, interval_s=args.interval_s, workers=args.workers,
                                   progress=progress)
    if not args.quiet:
        print(f"wrote {written.path} ({written.rows} rows) and {written.events_path} ({written.events} events)")
        print(_share_text(written.anomaly_share, share))
    return 0


def _anomaly_share(args, default: float | None) -> float | None:
    """The share of anomalous points asked for: --anomaly-share, else `default` (None: a count of
    events), unless --anomalies is given."""
    if args.anomaly_share is not None and args.anomalies is not None:
        raise SimulatorError("--anomalies, --anomaly-share: give one of them (a count of events or a share of "
                             "anomalous points), not both")
    if args.anomalies is not None:
        return None
    if args.anomaly_share is not None:
        return args.anomaly_share
    return default


def _share_text(achieved: float, asked: float | None) -> str:
    wanted = "" if asked is None else f" (asked: {asked:.2%})"
    return f"anomalous points: {achieved:.2%}{wanted}"


def _sharded_traces(args) -> int:
    from .api import checked_seed
    from .config import load_config
    from .scaleout import anomalous_share, run_job
    from .shards import make_job

    config = load_config(args.config)
    job = make_job(config, args.hosts, args.steps, checked_seed(config, args.seed), anomalies=args.anomalies,
                   anomaly_share=_anomaly_share(args, config.simulation.trace_anomaly_share),
                   interval_s=args.interval_s, shard_hosts=args.shard_hosts, shard_steps=args.shard_steps)
    started = time.perf_counter()
    with _progress(args.quiet, f"host ranges ({args.engine or 'local'})") as progress:
        manifest = run_job(job, args.output, engine=args.engine or "local", scheduler=args.scheduler,
                           workers=args.workers, progress=progress)
    if not args.quiet:
        took = time.perf_counter() - started
        print(f"wrote {args.output}/: {manifest['values']:,} values in {len(manifest['files'])} files "
              f"({job.n_ranges} host ranges x {job.n_chunks} time chunks), {manifest['events']} events, "
              f"{took:.1f} s ({manifest['values'] / took / 1e6:.1f} M values/s)")
        print(_share_text(anomalous_share(args.output), job.anomaly_share))
    return 0


# what the sample job writes in --output-dir: the dataset, its backups and damaged copies, the staging
DATASET_FILES = ("metrics_dataset*.json",)
STAGING_FOLDERS = ("staging", "staging.partial", "staging.old")


def _output_dir(path: Path, files: tuple[str, ...] = DATASET_FILES, folders: tuple[str, ...] = STAGING_FOLDERS,
                option: str = "--output-dir") -> Path:
    """`path` as an output folder: writable (or creatable), and none of our outputs in it a link, FIFO
    or wrong kind.

    The folder itself may be a link (training -> /data/training); what is inside is never written
    through a link, so no file outside the folder is replaced.  Checked before anything is touched."""
    from datasafe import output_folder_problem

    problem = output_folder_problem(path, files, folders)
    if problem:
        raise SimulatorError(f"{option}: {problem}")
    return path


def _stages(quiet: bool, command: str):
    """A callback that prints each stage of a long command to stderr as it starts, with the time so far."""
    started = time.perf_counter()

    def stage(text: str) -> None:
        if not quiet:
            print(f"{command}: {text} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    return stage


class _progress:
    """A rich progress bar over host blocks, shown on a terminal for runs of more than one block."""

    def __init__(self, quiet: bool, label: str):
        self.quiet, self.label, self.bar, self.task = quiet, label, None, None

    def __enter__(self):
        return None if self.quiet or not sys.stderr.isatty() else self.update

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            if total <= 1:
                return
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            from rich.console import Console
            self.bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


def _exit(code: int) -> None:
    """End the program: the objects still alive are frozen first, so the interpreter's collections at
    exit do not traverse the 200,000-odd objects numba, LLVM and Polars hold (0.12 s after a sample
    job); they go with the process. Every output is written and closed by then."""
    gc.freeze()
    sys.exit(code)


_PROGRAM = False  # run as `python -m simulator` (not `main()` called in a process that goes on)

if __name__ == "__main__":
    _PROGRAM = True
    _exit(main())
