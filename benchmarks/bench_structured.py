"""Structured answers of a model on grounded prompts: how many are valid JSON, how many the verifier keeps.

    python benchmarks/bench_structured.py                       # the embedded default (SmolLM2), 10 prompts
    python benchmarks/bench_structured.py --prompts 30 --seed 5
    python benchmarks/bench_structured.py --endpoint ollama=http://127.0.0.1:11434 --models qwen2.5:3b
    python benchmarks/bench_structured.py --staging out/language_staging   # only read a finished run

Simulates a small metrics dataset (300 samples, --seed), runs `python -m language generate --types
metrics_explanation --from-metrics ...` on it (the answers asked for as JSON through the backend's
structured output), then reads the run's ledger:

* valid JSON: the answers that parsed and followed verify.ANSWER_SCHEMA (the rest were rejected as
  "structured: not JSON", "structured: schema: ..." or "truncated at the token limit", a cut answer);
* verified: the valid ones that reached the verifier (the quality filters come first), and agreed:
  those it kept (the export's grounding_agreement);
* verdict = label: the valid answers whose verdict is the sample's label ("healthy" for normal);
* every rejection reason with its count.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from language.verify import parse_answer  # noqa: E402

CUT = "truncated at the token limit"


def run(args, work: Path) -> Path:
    sim = work / "sim"
    subprocess.run([sys.executable, "-m", "simulator", "--samples", "300", "--seed", str(args.seed),
                    "--output-dir", str(sim), "--quiet"], cwd=ROOT, check=True)
    cmd = [sys.executable, "-m", "language", "generate", "--types", "metrics_explanation", "--count",
           str(args.prompts), "--seed", str(args.seed), "--from-metrics", str(sim / "metrics_dataset.json"),
           "--output-dir", str(work / "out"), "--quiet"]
    for e in args.endpoint:
        cmd += ["--endpoint", e]
    if args.models:
        cmd += ["--models", args.models]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    print(f"generate: exit {done.returncode} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if done.returncode not in (0, 3):
        sys.exit(done.stderr[-2000:])
    return work / "out" / "language_staging"


def report(staging: Path) -> None:
    db = sqlite3.connect(staging / "ledger.sqlite")
    rows = db.execute("SELECT status, reason, label, response, structured, model FROM results "
                      "WHERE label IS NOT NULL ORDER BY rowid").fetchall()
    db.close()
    answered = [r for r in rows if r[0] != "failed"]
    invalid = [r for r in answered if r[1] and (r[1].startswith("structured:") or r[1] == CUT)]
    valid = [r for r in answered if r not in invalid]
    verified = [r for r in valid if r[0] == "accepted" or (r[1] or "").startswith("grounding:")]
    agreed = [r for r in verified if r[0] == "accepted"]

    def verdict(r):
        answer = parse_answer(r[4] if r[4] is not None else r[3])[0]
        return answer["verdict"] if answer else None

    right = [r for r in valid if verdict(r) == ("healthy" if r[2] == "normal" else r[2])]
    labels = Counter(r[2] for r in rows)
    n = len(answered)
    print(f"models: {', '.join(sorted({r[5] for r in rows if r[5]}))}; prompts: {len(rows)} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(labels.items()))}); answered: {n}")
    print(f"valid JSON (parsed, schema followed): {len(valid)}/{n} = {len(valid) / max(n, 1):.2f}")
    print(f"verdict = label: {len(right)}/{len(valid)}")
    print(f"verified: {len(verified)}; verifier agreed (kept): {len(agreed)}/{len(verified)}"
          + (f" = {len(agreed) / len(verified):.2f}" if verified else ""))
    print("rejections:")
    for reason, count in Counter((r[1] or "")[:110] for r in answered if r[0] != "accepted").most_common():
        print(f"  {count:3d}  {reason}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--prompts", type=int, default=10)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--endpoint", action="append", default=[], metavar="TYPE=URL")
    ap.add_argument("--models", default=None)
    ap.add_argument("--staging", type=Path, default=None, help="read this finished run's ledger instead")
    args = ap.parse_args()
    if args.staging is not None:
        report(args.staging)
        return
    with tempfile.TemporaryDirectory(prefix="bench_structured_") as tmp:
        report(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
