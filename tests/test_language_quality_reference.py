"""The quality filters and the dedup decide exactly as the implementation they replaced.

The reference below is the pure Python/numpy code of language/quality.py before the MinHash moved to a
compiled kernel and the n-grams to map/zip (copied verbatim, only renamed); hypothesis feeds both the
same texts and sequences of texts (with near copies of earlier ones) and every result must be equal:
words, shingles, repetition shares, rejection reasons, MinHash signatures, LSH keys and each
find/add decision of a DuplicateIndex with its reason.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from language import quality

# ------------------------------------------------------------------------------- reference (old code)
WORD = re.compile(r"[a-z0-9]+(?:['._-][a-z0-9]+)*")  # the pattern as it was (not quality.WORD)
MAX_REPEATED_SHARE = 0.3
N_PERM = 32
BANDS = 8
_MASK = (1 << 61) - 1
_RNG = np.random.default_rng(20260105)
_A = _RNG.integers(1, _MASK, N_PERM, dtype=np.uint64)
_B = _RNG.integers(0, _MASK, N_PERM, dtype=np.uint64)


def ref_words(text):
    return tuple(WORD.findall(text.lower()))


def ref_shingles(text):
    w = ref_words(text)
    return frozenset(" ".join(w[i:i + 3]) for i in range(max(len(w) - 2, 1)))


def ref_normalized_hash(text):
    return hashlib.sha256(" ".join(ref_words(text)).encode()).hexdigest()


def ref_check(text, prompt, finish_reason, min_words):
    if not text:
        return "empty"
    if quality.TEMPLATE_TOKENS.search(text):
        return "template token in the answer"
    if finish_reason == "length":
        return "truncated at the token limit"
    n = len(ref_words(text))
    if n < min_words:
        return f"too short ({n} words, minimum {min_words})"
    if quality.REFUSALS.match(text):
        return "refusal"
    if ref_repetition(text) > MAX_REPEATED_SHARE:
        return "repetitive (the same phrases over and over)"
    if ref_echoes(text, prompt):
        return "echoes the prompt"
    return None


def ref_repetition(text):
    w = ref_words(text)
    grams = [" ".join(w[i:i + 4]) for i in range(len(w) - 3)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def ref_echoes(text, prompt):
    a, p = ref_shingles(text), ref_shingles(prompt)
    if not a or not ref_words(prompt):
        return False
    return len(a & p) / len(a) >= 0.6 or " ".join(ref_words(prompt)) in " ".join(ref_words(text))


def ref_minhash(sh):
    x = np.array([(zlib.crc32(b) << 32 | zlib.adler32(b)) & _MASK for b in (t.encode() for t in sh)],
                 dtype=np.uint64)
    return ((np.multiply.outer(x, _A) + _B) % np.uint64(_MASK)).min(axis=0)


def ref_lsh_keys(sh):
    if not sh:
        return ()
    sig = ref_minhash(sh).tolist()
    rows = N_PERM // BANDS
    return tuple((b, *sig[b * rows:(b + 1) * rows]) for b in range(BANDS))


@dataclass
class RefDuplicateIndex:
    threshold: float = 0.9
    exact: dict = field(default_factory=dict)
    buckets: dict = field(default_factory=dict)
    sets: dict = field(default_factory=dict)

    def find(self, text):
        norm = ref_normalized_hash(text)
        if norm in self.exact:
            return f"exact duplicate of {self.exact[norm]}"
        sh = ref_shingles(text)
        for key in ref_lsh_keys(sh):
            for other in self.buckets.get(key, ()):
                o = self.sets[other]
                if len(sh & o) / max(len(sh | o), 1) >= self.threshold:
                    return f"near duplicate of {other}"
        return None

    def add(self, item_id, text):
        self.exact.setdefault(ref_normalized_hash(text), item_id)
        sh = ref_shingles(text)
        self.sets[item_id] = sh
        for key in ref_lsh_keys(sh):
            self.buckets.setdefault(key, []).append(item_id)


# ------------------------------------------------------------------------------------- strategies
VOCAB = ["the", "logs", "show", "a", "high", "cpu", "vemkd", "restart", "splunk", "index", "disk", "is",
         "full", "on", "host-01", "p99", "latency", "rose", "and", "then", "fell", "i'm", "sorry", "e.g",
         "Ünïcode", "naïve", "straße", "İstanbul", "K", "ﬁle", "<|im_end|>", "<think>x</think>", "\n", "—"]
word_texts = st.lists(st.sampled_from(VOCAB), min_size=0, max_size=60).map(" ".join)
any_texts = st.text(max_size=300)
texts = st.one_of(word_texts, any_texts)


@st.composite
def sequences(draw):
    """Answers in arrival order; some are copies of earlier ones with a few words changed, dropped or added."""
    out = []
    for _ in range(draw(st.integers(1, 25))):
        if out and draw(st.booleans()):
            w = draw(st.sampled_from(out)).split(" ")
            for _ in range(draw(st.integers(0, 3))):
                i = draw(st.integers(0, len(w)))
                op = draw(st.sampled_from(("replace", "drop", "add")))
                if op == "add" or not w or i == len(w):
                    w.insert(i, draw(st.sampled_from(VOCAB)))
                elif op == "drop":
                    del w[i]
                else:
                    w[i] = draw(st.sampled_from(VOCAB))
            out.append(" ".join(w))
        else:
            out.append(draw(st.lists(st.sampled_from(VOCAB[:20]), min_size=0, max_size=80).map(" ".join)))
    return out


# ------------------------------------------------------------------------------------------ tests
@settings(max_examples=300)
@given(texts, texts, st.sampled_from(["stop", "length"]), st.integers(0, 30))
def test_words_shingles_repetition_and_check_match_the_reference(text, prompt, finish, min_words):
    text = quality.clean(text)
    assert quality.words(text) == ref_words(text)
    assert quality.shingles(text) == ref_shingles(text)
    assert quality.repetition(text) == ref_repetition(text)
    assert quality._normalized_hash(text) == ref_normalized_hash(text)
    assert quality.check(text, prompt, finish, min_words) == ref_check(text, prompt, finish, min_words)


@pytest.mark.parametrize("prompt", ["???", "", "Explain TCP.", "tcp"])
def test_a_prompt_of_few_or_no_words_is_echoed_only_when_the_answer_holds_it(prompt):
    answer = "tcp carries segments and the receiver acknowledges each one it gets in order here"
    expected = "echoes the prompt" if prompt.lower().strip(".") == "tcp" else None
    assert quality.check(answer, prompt, "stop", 3) == ref_check(answer, prompt, "stop", 3) == expected


@settings(max_examples=300)
@given(st.frozensets(st.text(max_size=40), min_size=1, max_size=80))
def test_minhash_of_any_shingle_set_matches_the_reference(sh):
    # arbitrary strings: non-ASCII, empty, containing the kernel's separator
    assert quality._minhash(sh).tolist() == ref_minhash(sh).tolist()
    assert quality._lsh_keys(sh) == ref_lsh_keys(sh)


@settings(max_examples=200)
@given(texts)
def test_minhash_of_a_text_matches_the_reference(text):
    sh = quality.shingles(text)
    assert quality._minhash(sh).tolist() == ref_minhash(sh).tolist()


def test_minhash_extremes_match_the_reference():
    # long shingles (adler32 sums past 65521 many times), every byte value, the empty shingle
    sets = [frozenset({"z" * 20000}), frozenset({bytes(range(256)).decode("latin-1")}), frozenset({""}),
            frozenset({"\n", "\n\n", "a\nb"}), frozenset(f"w{i} w{i + 1} w{i + 2}" for i in range(5000))]
    for sh in sets:
        assert quality._minhash(sh).tolist() == ref_minhash(sh).tolist()


@settings(max_examples=150)
@given(sequences(), st.sampled_from([0.5, 0.8, 0.9, 1.0]))
def test_duplicate_decisions_and_reasons_match_the_reference(answers, threshold):
    new, ref = quality.DuplicateIndex(threshold), RefDuplicateIndex(threshold)
    for i, text in enumerate(answers):
        got, want = new.find(text), ref.find(text)
        assert got == want, (i, text)
        if got is None:
            new.add(f"id{i}", text)
            ref.add(f"id{i}", text)
    assert {k: list(v) for k, v in new.buckets.items()} == ref.buckets and new.exact == ref.exact


def test_the_mersenne_fold_reduces_every_residue_exactly():
    # a*x + b chosen to land on M, 2M, M - 1, 2**64 - 1 (unreachable in practice with the fixed A, B)
    x = (zlib.crc32(b"abc") << 32 | zlib.adler32(b"abc")) & _MASK
    data, lengths = np.frombuffer(b"abc", np.uint8), np.array([3], np.int64)
    for b in (_MASK - x, 2 * _MASK - x, _MASK - 1 - x, (1 << 64) - 1 - x):
        got = quality._kernel()(data, lengths, np.array([1], np.uint64), np.array([b], np.uint64),
                                quality._crc_table())
        assert got.tolist() == [(x + b) % _MASK]


@settings(max_examples=500)
@given(st.text(alphabet="ab09'._- \nZé", max_size=80))
def test_the_word_pattern_finds_the_same_words_as_the_old_one(text):
    # dense in the characters where a possessive quantifier could differ: separators, runs, ends
    assert quality.WORD.findall(text) == WORD.findall(text) == re.findall(quality.WORD_PATTERN, text)
