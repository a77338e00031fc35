"""One tokenisation per answer (quality.tokens, a compiled pass) decides exactly as the Python code it
replaced: words, normalized text, shingles, MinHash/LSH keys, shared shingles (with colliding hashes
resolved byte by byte), and the lexical relevance gate (candidate runs found by prefix search instead of
every stem of the text), each against the old code (the quality reference of
test_language_quality_reference.py, and the gate's old stem-set code copied below).
"""

from __future__ import annotations

import bisect
import math

import numpy as np
from hypothesis import given, settings, strategies as st

from language import quality, relevance

from test_language_quality_reference import ref_lsh_keys, ref_repetition, ref_shingles, ref_words, texts


# ------------------------------------------------------------------ the lexical gate as it was (old code)
def ref_text_stems(text):
    return frozenset(map(relevance.stem, relevance.TOKEN.findall(text.lower())))


def ref_present(s, stems, ordered):
    if s in stems:
        return True
    if len(s) >= relevance.MIN_PREFIX:
        if any(s[:k] in stems for k in range(relevance.MIN_PREFIX, len(s))):
            return True
        i = bisect.bisect_left(ordered, s)
        return i < len(ordered) and ordered[i].startswith(s)
    return False


def ref_missing(text, term, prompt=""):
    wanted = relevance.term_stems(term)
    if prompt:
        in_prompt = ref_text_stems(prompt)
        wanted = tuple(s for s in wanted if ref_present(s, in_prompt, tuple(sorted(in_prompt))))
    if not wanted:
        return []
    stems = ref_text_stems(text)
    ordered = tuple(sorted(stems))
    absent = [s for s in wanted if not ref_present(s, stems, ordered)]
    need = len(wanted) if len(wanted) <= 2 else math.ceil(relevance.LONG_TERM_SHARE * len(wanted))
    return absent if len(wanted) - len(absent) < need else []


# ------------------------------------------------------------------------------------------ tests
@settings(max_examples=300)
@given(texts)
def test_tokens_match_the_reference(text):
    t = quality.tokens(text)
    w = ref_words(text)
    assert t.joined == " ".join(w) and t.words == len(w)
    assert t.repeated == ref_repetition(text)
    found = [t.data[s:e].tobytes().decode() for s, e in zip(t.starts, t.ends)]
    assert len(found) == len(set(found)) and set(found) == ref_shingles(text)   # each distinct shingle once
    assert list(t.keys) == sorted(t.keys)
    assert t.lsh_keys == ref_lsh_keys(ref_shingles(text))
    prompt = quality.tokens(text, False)   # a prompt's: the same words and shingles, no repetition nor LSH keys
    assert prompt.joined == t.joined and prompt.keys.tolist() == t.keys.tolist() and prompt.lsh_keys == ()


@settings(max_examples=300)
@given(texts, texts)
def test_shared_shingles_match_the_reference(a, b):
    assert quality.tokens(a).common(quality.tokens(b, False)) == len(ref_shingles(a) & ref_shingles(b))


def test_colliding_hashes_are_told_apart_byte_by_byte():
    quality._kernels()
    data = np.frombuffer(b"ab ab cd ab ef cd", np.uint8)
    starts, ends = np.array([0, 3, 6, 9, 12, 15]), np.array([2, 5, 8, 11, 14, 17])
    same = np.zeros(6, np.uint64)   # every key equal: only the bytes can tell the grams apart
    kept = quality._distinct(same, starts, ends, data)
    assert sorted(data[starts[k]:ends[k]].tobytes() for k in kept) == [b"ab", b"cd", b"ef"]
    other = np.frombuffer(b"cd gh", np.uint8)
    common = quality._kernels()[2](same[kept], starts[kept], ends[kept], data,
                                   np.zeros(2, np.uint64), np.array([0, 3]), np.array([2, 5]), other)
    assert common == 1   # "cd" only, though every key matches


@settings(max_examples=500)
@given(st.from_regex(r"[a-z0-9]{1,14}", fullmatch=True))
def test_a_stem_but_its_last_letter_begins_its_word(word):
    # what lets the lexical gate look only at the runs beginning with a stem's first letters
    s = relevance.stem(word)
    assert s and word.startswith(s[:-1])


GATE_VOCAB = ["heap", "heaps", "dump", "dumps", "dumping", "dependency", "dependencies", "retransmission",
              "retransmit", "retransmits", "tcp", "vm.swappiness", "swapping", "swapped", "cache", "caching",
              "the", "of", "a", "and", "c", "x", "processes", "process", "leaking", "leak", "vemkd", "lim",
              "sar", "logrotate", "logrotated", "rto", "metaspace", "metaspaces", "thread", "threaded", "e.g",
              "heapdumps", "predump", "i'm", "naïve", "K", "İstanbul", "—", "-", "_", "dumpy", "ed", "sing", "ies"]
gate_texts = st.lists(st.sampled_from(GATE_VOCAB), min_size=0, max_size=30).map(" ".join)
terms = st.one_of(st.lists(st.sampled_from(GATE_VOCAB), min_size=1, max_size=4).map(" ".join),
                  st.sampled_from(["heap dump (JVM)", "TCP retransmission", "C", "vm.swappiness", "RTO"]))


@settings(max_examples=400)
@given(gate_texts, terms, st.one_of(st.just(""), gate_texts))
def test_the_lexical_gate_matches_the_stem_set_reference(text, term, prompt):
    assert relevance.LexicalGate().missing(text, term, prompt) == ref_missing(text, term, prompt)


@settings(max_examples=200)
@given(texts, terms, texts)
def test_the_lexical_gate_matches_the_reference_on_any_text(text, term, prompt):
    assert relevance.LexicalGate().missing(text, term, prompt) == ref_missing(text, term, prompt)


def test_the_labelled_answers_get_the_same_decisions():
    from relevance_set import labelled

    for term, prompt, text, _ in labelled():
        assert relevance.LexicalGate().missing(text, term, prompt) == ref_missing(text, term, prompt)
