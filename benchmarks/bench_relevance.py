"""How well the free-text relevance gates (language/relevance.py) decide, on the labelled set.

    python benchmarks/bench_relevance.py              # both gates (the embedding one needs the relevance extra)
    python benchmarks/bench_relevance.py --lexical    # the lexical gate only

For each gate: precision and recall (relevant = the positive class) on tests/data/relevance_answers.yaml,
its confusion matrix and every wrong decision with the gate's reason; then one-line breakages of each
gate and the figures they leave (tests/test_free_text_gates.py holds the floors that catch them); and
the time per answer of the embedding gate as a ratio to the lexical one's, measured side by side.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the labelled set's reader lives beside the set

from relevance_set import decisions, labelled, precision_recall  # noqa: E402

from language import quality, relevance  # noqa: E402
from language.domain import load_domain  # noqa: E402
from language.settings import load_settings  # noqa: E402


def report(name: str, gate) -> None:
    rows = decisions(gate)
    tp = sum(r[3] and reason is None for r, reason in rows)
    fp = sum(not r[3] and reason is None for r, reason in rows)
    fn = sum(r[3] and reason is not None for r, reason in rows)
    tn = len(rows) - tp - fp - fn
    precision, recall = precision_recall(gate)
    print(f"\n{name}: precision {precision:.3f}, recall {recall:.3f} "
          f"(accepted relevant {tp}, accepted irrelevant {fp}, rejected relevant {fn}, rejected irrelevant {tn})")
    for (term, _, text, relevant), reason in rows:
        if (reason is None) != relevant:
            print(f"  wrong: {'relevant' if relevant else 'irrelevant'} answer on {term!r} "
                  f"{'rejected: ' + reason if reason else 'accepted'}: {text[:70]}...")


class SubstringLexical(relevance.LexicalGate):
    """Breakage: the term's words searched as substrings of the text, not as whole words."""

    def missing(self, text, term, prompt=""):
        return [w for w in relevance.term_stems(term) if w not in text.lower()]


class NoStemLexical(relevance.LexicalGate):
    """Breakage: the stemmer returns words unchanged."""

    def missing(self, text, term, prompt=""):
        original = relevance.stem
        relevance.stem = lambda w: w
        relevance.term_stems.cache_clear()
        try:
            return super().missing(text, term, prompt)
        finally:
            relevance.stem = original
            relevance.term_stems.cache_clear()


def per_answer_seconds(gate, repeat: int = 3) -> float:
    rows = labelled()
    best = float("inf")
    for _ in range(repeat):
        if isinstance(gate, relevance.EmbeddingGate):
            gate.embedding.cache_clear()
        quality.tokens.cache_clear()
        started = time.perf_counter()
        for term, prompt, text, _ in rows:
            gate.check(text, term, prompt)
        best = min(best, (time.perf_counter() - started) / len(rows))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--lexical", action="store_true", help="the lexical gate only")
    args = parser.parse_args()
    rows = labelled()
    print(f"labelled set: {len(rows)} answers on {len({r[0] for r in rows})} terms, "
          f"{sum(r[3] for r in rows)} relevant")
    lexical = relevance.LexicalGate()
    report("lexical gate", lexical)
    print("\nbreakages of the lexical gate:")
    for name, gate in (("substring search", SubstringLexical()), ("no stemming", NoStemLexical())):
        p, r = precision_recall(gate)
        print(f"  {name}: precision {p:.3f}, recall {r:.3f}")
    if args.lexical:
        return 0
    if not relevance.embedding_available():
        print("\nembedding gate: the relevance extra is not installed (pip install -e .[relevance])")
        return 0
    q = load_settings().quality
    embedding = relevance.EmbeddingGate(q.relevance_min_similarity, relevance.load_model(),
                                        relevance.domain_pool(load_domain()))
    report(f"embedding gate (min similarity {q.relevance_min_similarity:g}, {len(embedding.pool)} domain terms)",
           embedding)
    print("\nbreakages of the embedding gate:")
    no_pool = relevance.EmbeddingGate(q.relevance_min_similarity, embedding.model)
    no_lexical = relevance.EmbeddingGate(q.relevance_min_similarity, embedding.model, embedding.pool)
    no_lexical.lexical = SubstringLexical()
    no_lexical.lexical.check = lambda text, term, prompt: "never"
    for name, gate in (("no domain terms to compare with (absolute cosine only)", no_pool),
                       ("without the lexical evidence", no_lexical)):
        p, r = precision_recall(gate)
        print(f"  {name}: precision {p:.3f}, recall {r:.3f}")
    lex_s, emb_s = per_answer_seconds(lexical), per_answer_seconds(embedding)
    print(f"\ntime per answer, embedding gate / lexical gate (same process, best of 3): {emb_s / lex_s:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
