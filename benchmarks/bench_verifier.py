"""How well the grounded-answer verifier (language/verify.py) decides, on the labelled answer set.

    python benchmarks/bench_verifier.py                 # the answer set, the breakages, simulated samples
    python benchmarks/bench_verifier.py --samples 0     # only the answer set and the breakages
    python benchmarks/bench_verifier.py --markdown out.md

1. The labelled answer set (tests/data/grounded_answers.yaml: hand-written answers, structured and
   free, each with its sample and the expected decision; accept = positive): precision, recall and
   the confusion matrix, overall, for free text and structured answers, for the held-out answers
   (written after the verifier and never used to tune it), per category (right, vague, wrong kind,
   ...), and every wrong decision with the verifier's reasons.
2. One-line breakages of the verifier (substring matches, negation without clause scope, kind
   phrases also read as metrics, every metric taken as moved) and the figures each leaves: the
   test's bar of 0.95 must catch each.
3. Simulated samples (--samples N, --seed S; 0 skips): how many of the simulator's anomalous
   samples the verifier can ground (at least one metric moved in what a prompt shows), per kind,
   from the snapshot alone (an older metrics JSON), from the JSON with the context window it carries
   and from the staging window; how the moved metrics agree with the simulator's own
   targets.anomalous_metrics; and the verifier's speed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the answer set's reader lives beside the answer set

from answer_set import load_cases, score  # noqa: E402

from language import verify  # noqa: E402
from language.grounding import load_vocabulary  # noqa: E402


def _row(name: str, s) -> str:
    return (f"| {name} | {s.tp + s.fp + s.fn + s.tn} | {s.precision:.3f} | {s.recall:.3f} | "
            f"{s.tp} | {s.fp} | {s.fn} | {s.tn} |")


HEADER = "| answers | n | precision | recall | TP | FP | FN | TN |\n|---|---|---|---|---|---|---|---|"


def answer_set_tables(cases, vocab) -> list[str]:
    out = ["## The labelled answer set", "", HEADER]
    groups = [("all", cases), ("free text", [c for c in cases if not c.structured]),
              ("structured", [c for c in cases if c.structured]), ("held out", [c for c in cases if c.heldout]),
              ("issue 16's cases", [c for c in cases if c.issue])]
    for name, group in groups:
        out.append(_row(name, score(group, vocab)))
    out += ["", "| category | n | expected | wrong decisions |", "|---|---|---|---|"]
    by_cat = defaultdict(list)
    for c in cases:
        by_cat[c.category].append(c)
    for cat, group in sorted(by_cat.items()):
        s = score(group, vocab)
        expected = Counter("accept" if c.accept else "reject" for c in group)
        out.append(f"| {cat} | {len(group)} | {', '.join(f'{v} {k}' for k, v in sorted(expected.items()))} | "
                   f"{len(s.errors)} |")
    errors = score(cases, vocab).errors
    out += ["", f"Wrong decisions ({len(errors)}):" if errors else "Wrong decisions: none."]
    for c, reason in errors:
        out.append(f"- {c.id} ({c.category}, expected {'accept' if c.accept else 'reject'}): "
                   f"{reason or 'accepted'} -- {c.text[:120]!r}")
    return out


@contextmanager
def _patched(name: str, value):
    old = getattr(verify, name)
    setattr(verify, name, value)
    try:
        yield
    finally:
        setattr(verify, name, old)


def breakage_table(cases, vocab) -> list[str]:
    original_claims = verify._metric_claims
    breakages = [
        ("substring matches (no word boundaries)", "_phrase_spans",
         lambda text, phrase: [(m.start(), m.end()) for m in re.finditer(re.escape(phrase), text)]),
        ("negation without clause scope (one clause per answer)", "_clauses",
         lambda text: [verify._Clause(verify._normalise(text), False, False, False)]),
        ("kind phrases also read as metrics", "_metric_claims",
         lambda clauses, v, spans: original_claims(clauses, v, {})),
        ("every metric taken as moved", "moved_metrics", lambda sample: verify._metric_names()),
    ]
    out = ["## One-line breakages (the test's bar: precision and recall >= 0.95)", "", HEADER]
    out.append(_row("the verifier", score(cases, vocab)))
    for name, attr, value in breakages:
        with _patched(attr, value):
            out.append(_row(name, score(cases, vocab)))
    return out


def simulated_table(n: int, seed: int) -> list[str]:
    from language.grounding import StagedSamples, read_metric_samples, with_context_window
    from language.verify import moved_metrics, sample_from_dict
    from simulator.__main__ import main as simulator_main
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        assert simulator_main(["--samples", str(n), "--output-dir", tmp, "--quiet", "--seed", str(seed)]) == 0
        dataset = read_metric_samples(Path(tmp) / "metrics_dataset.json")
        staged = StagedSamples(Path(tmp) / "staging")
        windows = staged.take(np.arange(staged.n))
    sources = {"snapshot only": [{k: v for k, v in s.items() if k != "context"} for s in dataset],
               "JSON with its context": [with_context_window(s) for s in dataset], "staging window": windows}
    truth = {s["id"]: set((s.get("targets") or {}).get("anomalous_metrics") or ()) for s in dataset}
    counts: dict[str, Counter] = defaultdict(Counter)
    agree = {name: Counter() for name in sources}
    t0 = time.perf_counter()
    for name, samples in sources.items():
        for s in samples:
            label = (s.get("anomaly_type") or "normal") if s["status"] == "anomaly" else "normal"
            moved = set(moved_metrics(sample_from_dict(s, label)))
            if label == "normal":
                agree[name]["normal_samples"] += 1
                agree[name]["normal_moved"] += bool(moved)
                continue
            counts[label][name + "_n"] += 1
            counts[label][name] += bool(moved)
            agree[name]["tp"] += len(moved & truth[s["id"]])
            agree[name]["fp"] += len(moved - truth[s["id"]])
            agree[name]["fn"] += len(truth[s["id"]] - moved)
    per_sample_us = (time.perf_counter() - t0) / max(1, sum(len(v) for v in sources.values())) * 1e6
    names = list(sources)
    out = [f"## Simulated samples ({n}, seed {seed}): anomalies the data can ground", "",
           "Share of anomalous samples with at least one moved metric in what the prompt shows:", "",
           "| kind | anomalies | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    total = Counter()
    for kind, c in sorted(counts.items()):
        total.update(c)
        out.append(f"| {kind} | {c[names[0] + '_n']} | "
                   + " | ".join(f"{c[x] / c[x + '_n']:.0%}" for x in names) + " |")
    out.append(f"| all | {total[names[0] + '_n']} | "
               + " | ".join(f"{total[x] / total[x + '_n']:.0%}" for x in names) + " |")
    out += ["", "Moved metrics against the simulator's own `targets.anomalous_metrics` (the metrics the incident "
                "changed, from the trace without it), over the anomalous samples; and normal samples with a "
                "metric taken as moved:", "",
            "| source | precision | recall | normal samples with a moved metric |", "|---|---|---|---|"]
    for name in names:
        a = agree[name]
        precision, recall = a["tp"] / max(1, a["tp"] + a["fp"]), a["tp"] / max(1, a["tp"] + a["fn"])
        out.append(f"| {name} | {precision:.2f} | {recall:.2f} | {a['normal_moved'] / max(1, a['normal_samples']):.0%} |")
    cases = load_cases()
    vocab = load_vocabulary()
    t0 = time.perf_counter()
    for _ in range(5):
        for c in cases:
            verify.verify_answer(c.text, c.sample, vocab, structured=c.structured)
    per_answer_us = (time.perf_counter() - t0) / (5 * len(cases)) * 1e6
    out += ["", f"Movement per sample: {per_sample_us:.0f} us; a verified answer: {per_answer_us:.0f} us "
                f"(mean over the answer set)."]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--samples", type=int, default=2000, help="simulated samples for part 3 (0 skips it)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = p.parse_args(argv)
    cases, vocab = load_cases(), load_vocabulary()
    lines = answer_set_tables(cases, vocab) + [""] + breakage_table(cases, vocab)
    if args.samples > 0:
        lines += [""] + simulated_table(args.samples, args.seed)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        from datasafe import atomic_write_bytes
        atomic_write_bytes(args.markdown, (text + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
