"""Quality filters: clean an answer, or reject it with a reason that is kept in the ledger.

Order: strip reasoning blocks; reject empty, template-token leaks, truncated (the server said it hit
the token limit), too short, refusing, looping on itself, prompt-echoing; then exact duplicates (normalized text) and
near duplicates (word 3-gram Jaccard at or above the threshold, found through MinHash LSH buckets
and confirmed exactly).

Free-text answers (every type but the grounded metrics explanations) pass two more gates before the
duplicates: the length their prompt asks for ("120-220 words", "under 250 words"; `requested_length`)
within `length_tolerance` of its bounds, and relevance to their term and prompt (language/relevance.py);
each rejection's reason starts with the gate's name ("length: ...", "relevance (lexical): ...").
A prompt that asks for at most N words gets max_tokens = N x (1 + length_tolerance) x tokens_per_word
(`token_limit`; an answer cut there would be too long anyway), at most generation.max_tokens, which
prompts that ask no length (grounded ones) get.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import numpy as np

THINK_BLOCK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>\s*", re.S | re.I)
UNCLOSED_THINK = re.compile(r"^\s*<(think|thinking|reasoning)>.*", re.S | re.I)
TEMPLATE_TOKENS = re.compile(r"<\|[a-z_]+\|>|<\|im_(start|end)\|>|</?s>|\[/?INST\]|<\|eot_id\|>", re.I)
REFUSALS = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry, (but )?i|i cannot|i can'?t|i'?m unable|i am unable|as an ai\b|"
    r"i'?m not able|i am not able|i won'?t be able)", re.I)
WORD_PATTERN = r"[a-z0-9]+(?:['._-][a-z0-9]+)*"
try:  # possessive (Python 3.11+): the same words, since giving back letters or a complete ['._-] group
    # can never let the match continue (nothing follows the group); ~12 % faster without the saved states
    WORD = re.compile(r"[a-z0-9]++(?:['._-][a-z0-9]++)*+")
except re.error:  # Python 3.10
    WORD = re.compile(WORD_PATTERN)
# a rejection's kind: its reason up to the first ":", " (" or " of " ("near duplicate of X" -> "near
# duplicate", "too short (3 words, ...)" -> "too short", "grounding: ..." -> "grounding"); the same pattern
# in Python (run statistics) and in Polars (pipeline.quality_figures)
REASON_KIND_PATTERN = r"(?s)^(.*?)(?::| \(| of |$)"
REASON_KIND = re.compile(REASON_KIND_PATTERN)
# a requested length: "120-220 words", "120–220 words", "under 250 words", "at most 200 words"
LENGTH_REQUEST = re.compile(r"\b(?:(\d+)\s*(?:-|–|to)\s*|(?:under|at most|up to|no more than)\s+)(\d+)\s+words\b",
                            re.I)
MAX_REPEATED_SHARE = 0.3  # share of word 4-grams that repeat an earlier one: degenerate looping text
N_PERM = 32
BANDS = 8  # 8 bands x 4 rows: pairs with Jaccard 0.9 collide in some band with probability ~1
_MASK = (1 << 61) - 1
_RNG = np.random.default_rng(20260105)
_A = _RNG.integers(1, _MASK, N_PERM, dtype=np.uint64)
_B = _RNG.integers(0, _MASK, N_PERM, dtype=np.uint64)


def clean(text: str) -> str:
    """The answer without reasoning blocks and surrounding whitespace."""
    text = THINK_BLOCK.sub("", text)
    if UNCLOSED_THINK.match(text):
        return ""
    return text.strip()


def reason_kind(reason: str) -> str:
    """The kind of a rejection or failure reason (REASON_KIND_PATTERN), without the ids and figures."""
    return REASON_KIND.match(reason).group(1)


class Tokens(NamedTuple):
    """One text's tokenisation, computed once (`tokens`, one compiled pass) and read by every filter of
    the answer: the quality check (word count, repetition, prompt echo), the length gate, the lexical
    relevance gate (`joined`) and the dedup (normalized hash, shingles, MinHash LSH keys)."""

    joined: str               # the words (`words`) joined by single spaces: the normalized text
    words: int                # how many words
    repeated: float           # share of the word 4-grams that already occurred earlier (`repetition`)
    data: np.ndarray          # `joined` as bytes (words are ASCII)
    keys: np.ndarray          # the distinct shingles' stable hashes (`_gram_x`), sorted ...
    starts: np.ndarray        # ... and where each lies in `data`
    ends: np.ndarray
    lsh_keys: tuple           # the LSH band keys of the shingles' MinHash (`_lsh_keys(shingles(text))`)

    def common(self, other: "Tokens") -> int:
        """How many shingles the two texts share (the size of `shingles(a) & shingles(b)`)."""
        return _kernels()[2](self.keys, self.starts, self.ends, self.data,
                             other.keys, other.starts, other.ends, other.data)


@lru_cache(maxsize=512)
def tokens(text: str, answer: bool = True) -> Tokens:
    """`text`'s Tokens (cached: the filters, gates and dedup of one answer ask for the same); a prompt's
    (`answer=False`: only its words and shingles are asked) have no repetition share (0) nor LSH keys."""
    data = np.frombuffer(text.lower().encode("utf-8", "surrogatepass"), np.uint8)
    joined, n, distinct4, keys, starts, ends, signature = _kernels()[1](data, _A, _B, _crc_table(), answer)
    return Tokens(joined.tobytes().decode("ascii"), n, 1.0 - distinct4 / (n - 3) if answer and n > 3 else 0.0,
                  joined, keys, starts, ends, _band_keys(signature) if answer else ())


@lru_cache(maxsize=512)
def words(text: str) -> tuple[str, ...]:
    """Lower-case words (WORD); `tokens` finds the same ones (tested)."""
    return tuple(WORD.findall(text.lower()))


def shingles(text: str) -> frozenset[str]:
    """Word 3-grams joined by spaces; a text of fewer than 3 words is one shingle of all its words (the
    strings of the shingles `tokens` keeps as hashes and places)."""
    w = words(text)
    if len(w) < 3:
        return frozenset((" ".join(w),))
    return frozenset(map(" ".join, zip(w, w[1:], w[2:])))


def _normalized_hash(text: str) -> str:
    return _hash_of(tokens(text))


def _hash_of(t: Tokens) -> str:
    """The exact-duplicate key: sha256 of the normalized text."""
    return hashlib.sha256(t.data).hexdigest()


def check(text: str, prompt: str, finish_reason: str, min_words: int) -> str | None:
    """None when the cleaned answer is acceptable, else the rejection reason."""
    if not text:
        return "empty"
    if ("<" in text or "[" in text) and TEMPLATE_TOKENS.search(text):   # every template token opens so
        return "template token in the answer"
    if finish_reason == "length":
        return "truncated at the token limit"
    t = tokens(text)
    n = t.words
    if n < min_words:
        return f"too short ({n} words, minimum {min_words})"
    if REFUSALS.match(text):
        return "refusal"
    if t.repeated > MAX_REPEATED_SHARE:
        return "repetitive (the same phrases over and over)"
    if _echoes(t, tokens(prompt, False)):
        return "echoes the prompt"
    return None


@lru_cache(maxsize=1 << 16)   # asked when the items are built (max_tokens) and of each slot's answer
def requested_length(prompt: str) -> tuple[int, int] | None:
    """(least, most) words the prompt asks for (least 0 for "under N words"), or None when it asks none;
    the last request counts (templates end with it; a filled-in description may hold numbers of words)."""
    m = None
    for m in LENGTH_REQUEST.finditer(prompt):
        pass
    if m is None:
        return None
    low, high = int(m.group(1) or 0), int(m.group(2))
    return (low, high) if low <= high else (high, low)


def token_limit(prompt: str, tolerance: float, tokens_per_word: float, ceiling: int) -> int:
    """max_tokens for a prompt: the most words it accepts (its upper bound plus the tolerance) in tokens,
    at most `ceiling` (generation.max_tokens), which is also the limit of a prompt that asks no length."""
    asked = requested_length(prompt)
    if asked is None:
        return ceiling
    return min(ceiling, math.ceil(asked[1] * (1 + tolerance) * tokens_per_word))


def length_check(text: str, prompt: str, tolerance: float) -> str | None:
    """None when the answer's word count is within the prompt's requested range widened by `tolerance`
    (a share of each bound), or when the prompt asks for no length; else the "length: ..." reason."""
    asked = requested_length(prompt)
    if asked is None:
        return None
    low, high = asked
    least, most = math.floor(low * (1 - tolerance)), math.ceil(high * (1 + tolerance))
    n = tokens(text).words
    if least <= n <= most:
        return None
    return (f"length: {n} words, the prompt asks for {low}-{high} (accepted {least}-{most}, "
            f"tolerance {100 * tolerance:g} %)")


def repetition(text: str) -> float:
    """Share of the word 4-grams that already occurred earlier in the text."""
    return tokens(text).repeated


def _echoes(t: Tokens, prompt: Tokens) -> bool:
    """Most of the answer's shingles are the prompt's, or the answer holds the whole prompt (one with words)."""
    if prompt.words == 0:  # a prompt without words: nothing to echo
        return False
    return t.common(prompt) / len(t.keys) >= 0.6 or prompt.joined in t.joined


def _minhash(sh: frozenset[str]) -> np.ndarray:
    """The N_PERM MinHash values of a shingle set, for every permutation k the minimum over shingles of
    ((A[k] * x + B[k]) wrapped at 2**64) mod (2**61 - 1), where x is the shingle's stable hash
    (crc32 << 32 | adler32) & (2**61 - 1).

    One compiled pass over the shingles' bytes (`_signature`): the checksums and the 32 permutations
    without a Python object or numpy temporary per shingle."""
    joined = "\n".join(sh)
    data = joined.encode()
    if len(data) == len(joined):  # ASCII (words always are): one byte per character
        lengths = np.fromiter(map(len, sh), np.int64, len(sh))
    else:
        lengths = np.fromiter((len(t.encode()) for t in sh), np.int64, len(sh))
    return _kernel()(np.frombuffer(data, np.uint8), lengths, _A, _B, _crc_table())


def _gram_x(data, start, end, crc_table):  # compiled by numba in _kernels()
    """The stable hash x of the bytes data[start:end]: zlib's crc32 (table-driven, reflected 0xEDB88320)
    and adler32, combined as (crc32 << 32 | adler32) & (2**61 - 1)."""
    crc = np.uint32(0xFFFFFFFF)
    s1 = np.uint32(1)
    s2 = np.uint32(0)
    for j in range(start, end):
        byte = data[j]
        crc = crc_table[(crc ^ byte) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
        s1 = (s1 + byte) % np.uint32(65521)
        s2 = (s2 + s1) % np.uint32(65521)
    crc = crc ^ np.uint32(0xFFFFFFFF)
    return ((np.uint64(crc) << np.uint64(32)) | (np.uint64(s2) << np.uint64(16)) | np.uint64(s1)) & np.uint64(_MASK)


def _fold_min(out, x, a, b):  # compiled by numba in _kernels()
    """out[k] = min(out[k], ((a[k] * x + b[k]) wrapped at 2**64) mod (2**61 - 1)) for every permutation k.

    v mod M for M = 2**61 - 1 is (v >> 61) + (v & M), less M when that reaches M: exact for any 64-bit v,
    without a division."""
    mask = np.uint64(_MASK)
    for k in range(a.shape[0]):
        v = a[k] * x + b[k]
        folded = (v >> np.uint64(61)) + (v & mask)
        if folded >= mask:
            folded -= mask
        if folded < out[k]:
            out[k] = folded


def _signature(data, lengths, a, b, crc_table):  # compiled by numba in _kernels()
    """MinHash of the shingles laid end to end in `data` (lengths[i] bytes each, one separator byte
    between them): the minimum over shingles of each permutation of their stable hashes."""
    out = np.full(a.shape[0], np.uint64(0xFFFFFFFFFFFFFFFF))
    pos = 0
    for i in range(lengths.shape[0]):
        end = pos + lengths[i]
        _fold_min(out, _gram_x(data, pos, end, crc_table), a, b)
        pos = end + 1
    return out


def _is_word_byte(c):  # compiled by numba in _kernels(): [a-z0-9]
    return (c >= 97 and c <= 122) or (c >= 48 and c <= 57)


def _is_joiner(c):  # compiled by numba in _kernels(): ['._-], which joins two runs into one word
    return c == 39 or c == 46 or c == 95 or c == 45


def _same(data, s1, e1, s2, e2):  # compiled by numba in _kernels()
    """data[s1:e1] == data[s2:e2]."""
    if e1 - s1 != e2 - s2:
        return False
    for j in range(e1 - s1):
        if data[s1 + j] != data[s2 + j]:
            return False
    return True


def _distinct(keys, starts, ends, data):  # compiled by numba in _kernels()
    """The grams data[starts[i]:ends[i]] that are distinct as byte strings, one index each (the first),
    in the order they occur: an open-addressing table on their keys, where grams of equal keys are
    compared byte by byte, so a collision of keys never merges two different grams."""
    n = keys.shape[0]
    bits = 4
    while (1 << bits) < 2 * n:
        bits += 1
    mask = (1 << bits) - 1
    table = np.full(1 << bits, -1, np.int64)
    kept = np.empty(n, np.int64)
    count = 0
    for g in range(n):
        slot = np.int64((keys[g] * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))
        while True:
            k = table[slot]
            if k < 0:
                table[slot] = g
                kept[count] = g
                count += 1
                break
            if keys[k] == keys[g] and _same(data, starts[g], ends[g], starts[k], ends[k]):
                break
            slot = (slot + 1) & mask
    return kept[:count]


def _analyse(data, a, b, crc_table, answer):  # compiled by numba in _kernels()
    """One pass over a lower-cased text's UTF-8 bytes (`data`): its words (WORD: runs of [a-z0-9] joined
    by single ['._-]; every other byte, non-ASCII ones included, separates them) joined by single
    spaces; the distinct word 3-grams (shingles: a text of fewer than 3 words is one shingle of all its
    words) as their stable hashes x (`_gram_x`, sorted) and (start, end) in the joined bytes; and, for an
    `answer`, the number of distinct word 4-grams and the MinHash of the shingles (else 0 and no minimum)."""
    size = data.shape[0]
    joined = np.empty(size, np.uint8)
    ws = np.empty(size // 2 + 1, np.int64)
    we = np.empty(size // 2 + 1, np.int64)
    m = 0
    nw = 0
    i = 0
    while i < size:
        if not _is_word_byte(data[i]):
            i += 1
            continue
        if nw > 0:
            joined[m] = 32
            m += 1
        ws[nw] = m
        while True:
            while i < size and _is_word_byte(data[i]):
                joined[m] = data[i]
                m += 1
                i += 1
            if i + 1 < size and _is_joiner(data[i]) and _is_word_byte(data[i + 1]):
                joined[m] = data[i]
                m += 1
                i += 1
            else:
                break
        we[nw] = m
        nw += 1
    joined = joined[:m]
    # distinct 4-grams: keyed by FNV-1a hashes of their words (collisions are resolved by `_distinct`)
    distinct4 = 0
    if answer and nw > 3:
        wh = np.empty(nw, np.uint64)
        for w in range(nw):
            h = np.uint64(14695981039346656037)
            for j in range(ws[w], we[w]):
                h = (h ^ np.uint64(joined[j])) * np.uint64(1099511628211)
            wh[w] = h
        k4 = np.empty(nw - 3, np.uint64)
        for g in range(nw - 3):
            h = wh[g]
            for r in range(1, 4):
                h = h * np.uint64(1099511628211) + wh[g + r]
            k4[g] = h
        distinct4 = _distinct(k4, ws[:nw - 3], we[3:nw], joined).shape[0]
    # shingles
    ng = nw - 2 if nw >= 3 else 1
    gs = np.empty(ng, np.int64)
    ge = np.empty(ng, np.int64)
    if nw >= 3:
        gs[:] = ws[:ng]
        ge[:] = we[2:nw]
    else:
        gs[0] = 0
        ge[0] = m
    x = np.empty(ng, np.uint64)
    for g in range(ng):
        x[g] = _gram_x(joined, gs[g], ge[g], crc_table)
    kept = _distinct(x, gs, ge, joined)
    kept = kept[np.argsort(x[kept])]
    keys = x[kept]
    starts = gs[kept]
    ends = ge[kept]
    signature = np.full(a.shape[0], np.uint64(0xFFFFFFFFFFFFFFFF))
    if answer:
        for g in range(kept.shape[0]):
            _fold_min(signature, keys[g], a, b)
    return joined, nw, distinct4, keys, starts, ends, signature


def _common(ka, sa, ea, da, kb, sb, eb, db):  # compiled by numba in _kernels()
    """How many grams two sets of distinct grams share (each set: keys sorted, (start, end) in its bytes):
    grams of equal keys are compared byte by byte."""
    i = 0
    j = 0
    common = 0
    while i < ka.shape[0] and j < kb.shape[0]:
        if ka[i] < kb[j]:
            i += 1
        elif ka[i] > kb[j]:
            j += 1
        else:
            i2 = i
            while i2 < ka.shape[0] and ka[i2] == ka[i]:
                i2 += 1
            j2 = j
            while j2 < kb.shape[0] and kb[j2] == ka[i]:
                j2 += 1
            for p in range(i, i2):
                for q in range(j, j2):
                    if ea[p] - sa[p] == eb[q] - sb[q]:
                        equal = True
                        for t in range(ea[p] - sa[p]):
                            if da[sa[p] + t] != db[sb[q] + t]:
                                equal = False
                                break
                        if equal:
                            common += 1
                            break
            i, j = i2, j2
    return common


_HELPERS = ("_gram_x", "_fold_min", "_is_word_byte", "_is_joiner", "_same", "_distinct")


@lru_cache(maxsize=1)
def _kernels():
    """The compiled kernels (numba, cached on disk like the simulator's kernels) as (signature, analyse,
    common); numba is imported on the first use, so the command line's other paths do not pay for it.
    The helpers the kernels call are compiled first and take their module names, where numba finds them."""
    import numba
    from numba import types

    jit = dict(cache=True, nogil=True, error_model="numpy")
    g = globals()
    for name in _HELPERS:
        if not isinstance(g[name], numba.core.dispatcher.Dispatcher):
            g[name] = numba.njit(**jit)(g[name])

    def c_array(dtype, readonly=False):
        return types.Array(dtype, 1, "C", readonly=readonly)

    signature = c_array(types.uint64)(c_array(types.uint8, readonly=True),  # np.frombuffer of bytes
                                      c_array(types.int64), c_array(types.uint64), c_array(types.uint64),
                                      c_array(types.uint32))
    return (numba.njit(signature, **jit)(_signature), numba.njit(**jit)(_analyse), numba.njit(**jit)(_common))


def _kernel():
    """`_signature` compiled (`_kernels`)."""
    return _kernels()[0]


@lru_cache(maxsize=1)
def _crc_table() -> np.ndarray:
    """zlib's CRC-32 byte table (reflected polynomial 0xEDB88320)."""
    table = np.zeros(256, np.uint32)
    for n in range(256):
        c = n
        for _ in range(8):
            c = 0xEDB88320 ^ (c >> 1) if c & 1 else c >> 1
        table[n] = c
    return table


@dataclass
class FreeTextGates:
    """The gates of a free-text answer: its requested length (`length_check`), then its relevance to
    its term and prompt (a gate of language/relevance.py; None: no relevance gate), and, after the
    MinHash duplicates, its semantic duplicates (relevance.SemanticIndex; None without the embedding gate)."""

    tolerance: float = 0.25
    relevance: object | None = None
    semantic: object | None = None
    passed: str | None = None   # the last answer that passed `check`: only such answers join `semantic`
    scored: tuple[str, float | None] | None = None   # the last answer `check` measured, and its relevance

    def check(self, text: str, item) -> str | None:
        """None when the answer to `item` (a WorkItem) passes, else the reason; the relevance gate's score
        of an answer of the requested length is kept for `score`."""
        self.passed = self.scored = None
        reason = length_check(text, item.prompt, self.tolerance)
        if reason is None and self.relevance is not None:
            reason, score = self.relevance.assess(text, item.term, item.prompt)
            self.scored = text, score
        if reason is None:
            self.passed = text
        return reason

    def score(self, text: str) -> tuple[float, str] | None:
        """(the relevance score, the gate's name) of `text` if it is the answer `check` measured last and the
        gate scored it, else None."""
        if self.scored is None or self.scored[0] != text or self.scored[1] is None:
            return None
        return self.scored[1], self.relevance.name

    def describe(self) -> str:
        """Which gates are active, for the run's header."""
        relevance = self.relevance.describe() if self.relevance is not None else "none"
        return f"length (tolerance {100 * self.tolerance:g} %), relevance: {relevance}"


@dataclass
class DuplicateIndex:
    """Accepted answers so far: exact (normalized) hashes and MinHash LSH buckets of 3-gram sets; the
    free-text gates (`check_free_text`) ride along, since the runner asks this index of every answer."""

    threshold: float = 0.9
    exact: dict[str, str] = field(default_factory=dict)
    buckets: dict[tuple, tuple[str, ...]] = field(default_factory=dict)
    sets: dict[str, Tokens] = field(default_factory=dict)   # the accepted answers' Tokens (their shingles)
    free_text: FreeTextGates | None = None   # None: no free-text gates (pipeline.free_text_gates builds a run's)

    def check_free_text(self, text: str, item) -> str | None:
        """The free-text gates (length, relevance) for the answer to `item`: None or the reason."""
        return None if self.free_text is None else self.free_text.check(text, item)

    def relevance(self, text: str) -> tuple[float, str] | None:
        """(the relevance score, the gate's name) the free-text gates gave `text` (None: not measured)."""
        return None if self.free_text is None else self.free_text.score(text)

    def _semantic(self, text: str):
        """The semantic index when `text` is the free-text answer the gates just passed, else None."""
        gates = self.free_text
        return gates.semantic if gates is not None and gates.passed == text else None

    def find(self, text: str) -> str | None:
        """The reason `text` is a duplicate of an accepted answer, or None."""
        t = tokens(text)
        norm = _hash_of(t)
        if norm in self.exact:
            return f"exact duplicate of {self.exact[norm]}"
        n = len(t.keys)
        for key in t.lsh_keys:
            for other in self.buckets.get(key, ()):
                o = self.sets[other]
                common = t.common(o)  # |union| = |sh| + |o| - |common|, without building the union
                if common / max(n + len(o.keys) - common, 1) >= self.threshold:
                    return f"near duplicate of {other}"
        semantic = self._semantic(text)
        return semantic.find(text) if semantic is not None else None

    def add(self, item_id: str, text: str) -> None:
        """An accepted answer: into the exact and MinHash indexes, and into the semantic one when it is the
        free-text answer the gates just passed."""
        semantic = self._semantic(text)
        if semantic is not None:
            semantic.add(item_id, text)
        t = tokens(text)
        self.exact.setdefault(_hash_of(t), item_id)
        self.sets[item_id] = t
        buckets = self.buckets
        for key in t.lsh_keys:
            # a tuple, extended in arrival order: buckets hold one or two ids, and tuples of strings
            # leave the garbage collector's lists (8 lists per answer made its collections 5x dearer)
            buckets[key] = buckets.get(key, ()) + (item_id,)


@lru_cache(maxsize=512)
def _lsh_keys(sh: frozenset) -> tuple[tuple, ...]:
    """The LSH band keys of a shingle set."""
    return _band_keys(_minhash(sh)) if sh else ()


def _band_keys(signature: np.ndarray) -> tuple[tuple, ...]:
    """The LSH band keys of a MinHash signature: (band, its rows' values)."""
    sig = signature.tolist()
    rows = N_PERM // BANDS
    # zip of strided slices builds the same tuples in C
    return tuple(zip(range(BANDS), *(sig[r::rows] for r in range(rows))))
