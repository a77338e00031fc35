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


@lru_cache(maxsize=512)
def words(text: str) -> tuple[str, ...]:
    """Lower-case words; cached because every filter of one answer asks for them."""
    return tuple(WORD.findall(text.lower()))


@lru_cache(maxsize=512)
def _joined(text: str) -> str:
    """The words joined by single spaces: the normalized text (exact duplicates, prompt echoes)."""
    return " ".join(words(text))


@lru_cache(maxsize=512)
def shingles(text: str) -> frozenset[str]:
    """Word 3-grams joined by spaces; a text of fewer than 3 words is one shingle of all its words.

    Built with map/zip, so the loop runs in C (this was a Python generator per shingle)."""
    w = words(text)
    if len(w) < 3:
        return frozenset((" ".join(w),))
    return frozenset(map(" ".join, zip(w, w[1:], w[2:])))


@lru_cache(maxsize=512)
def _normalized_hash(text: str) -> str:
    return hashlib.sha256(_joined(text).encode()).hexdigest()


def check(text: str, prompt: str, finish_reason: str, min_words: int) -> str | None:
    """None when the cleaned answer is acceptable, else the rejection reason."""
    if not text:
        return "empty"
    if TEMPLATE_TOKENS.search(text):
        return "template token in the answer"
    if finish_reason == "length":
        return "truncated at the token limit"
    n = len(words(text))
    if n < min_words:
        return f"too short ({n} words, minimum {min_words})"
    if REFUSALS.match(text):
        return "refusal"
    if repetition(text) > MAX_REPEATED_SHARE:
        return "repetitive (the same phrases over and over)"
    if _echoes(text, prompt):
        return "echoes the prompt"
    return None


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
    n = len(words(text))
    if least <= n <= most:
        return None
    return (f"length: {n} words, the prompt asks for {low}-{high} (accepted {least}-{most}, "
            f"tolerance {100 * tolerance:g} %)")


def repetition(text: str) -> float:
    """Share of the word 4-grams that already occurred earlier in the text.

    4-grams are counted as word tuples: words hold no spaces, so two tuples are equal exactly when
    their space-joined strings are, and no string is built."""
    w = words(text)
    n = len(w) - 3
    return 1.0 - len(set(zip(w, w[1:], w[2:], w[3:]))) / n if n > 0 else 0.0


def _echoes(text: str, prompt: str) -> bool:
    a, p = shingles(text), shingles(prompt)
    if not a or not p:
        return False
    return len(a & p) / len(a) >= 0.6 or _joined(prompt) in _joined(text)


def _minhash(sh: frozenset[str]) -> np.ndarray:
    """The N_PERM MinHash values of a shingle set, for every permutation k the minimum over shingles of
    ((A[k] * x + B[k]) wrapped at 2**64) mod (2**61 - 1), where x is the shingle's stable hash
    (crc32 << 32 | adler32) & (2**61 - 1).

    One compiled pass over the shingles' bytes (`_signature`): the checksums and the 32 permutations
    without a Python object or numpy temporary per shingle (it was ~2/3 of the dedup's cost)."""
    joined = "\n".join(sh)
    data = joined.encode()
    if len(data) == len(joined):  # ASCII (words always are): one byte per character
        lengths = np.fromiter(map(len, sh), np.int64, len(sh))
    else:
        lengths = np.fromiter((len(t.encode()) for t in sh), np.int64, len(sh))
    return _kernel()(np.frombuffer(data, np.uint8), lengths, _A, _B, _crc_table())


def _signature(data, lengths, a, b, crc_table):  # compiled by numba in _kernel()
    """MinHash of the shingles laid end to end in `data` (lengths[i] bytes each, one separator byte
    between them): zlib's crc32 (table-driven, reflected 0xEDB88320) and adler32 of each shingle,
    combined into x, then min over shingles of the Mersenne-prime hash per permutation.

    v mod M for M = 2**61 - 1 is (v >> 61) + (v & M), less M when that reaches M: exact for any 64-bit v
    (the previous numpy code's `% M`) without a division."""
    mask = np.uint64(_MASK)
    out = np.full(a.shape[0], np.uint64(0xFFFFFFFFFFFFFFFF))
    pos = 0
    for i in range(lengths.shape[0]):
        end = pos + lengths[i]
        crc = np.uint32(0xFFFFFFFF)
        s1 = np.uint32(1)
        s2 = np.uint32(0)
        for j in range(pos, end):
            byte = data[j]
            crc = crc_table[(crc ^ byte) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
            s1 = (s1 + byte) % np.uint32(65521)
            s2 = (s2 + s1) % np.uint32(65521)
        pos = end + 1
        crc = crc ^ np.uint32(0xFFFFFFFF)
        x = ((np.uint64(crc) << np.uint64(32)) | (np.uint64(s2) << np.uint64(16)) | np.uint64(s1)) & mask
        for k in range(a.shape[0]):
            v = a[k] * x + b[k]
            folded = (v >> np.uint64(61)) + (v & mask)
            if folded >= mask:
                folded -= mask
            if folded < out[k]:
                out[k] = folded
    return out


@lru_cache(maxsize=1)
def _kernel():
    """`_signature` compiled (numba, cached on disk like the simulator's kernels); numba is imported on
    the first dedup, so the command line's other paths do not pay for it."""
    import numba
    from numba import types

    def c_array(dtype, readonly=False):
        return types.Array(dtype, 1, "C", readonly=readonly)

    signature = c_array(types.uint64)(c_array(types.uint8, readonly=True),  # np.frombuffer of bytes
                                      c_array(types.int64), c_array(types.uint64), c_array(types.uint64),
                                      c_array(types.uint32))
    return numba.njit(signature, cache=True, nogil=True, error_model="numpy")(_signature)


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

    def check(self, text: str, item) -> str | None:
        """None when the answer to `item` (a WorkItem) passes, else the reason."""
        self.passed = None
        reason = length_check(text, item.prompt, self.tolerance)
        if reason is None and self.relevance is not None:
            reason = self.relevance.check(text, item.term, item.prompt)
        if reason is None:
            self.passed = text
        return reason

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
    sets: dict[str, frozenset] = field(default_factory=dict)
    free_text: FreeTextGates | None = None   # None: no free-text gates (pipeline.free_text_gates builds a run's)

    def check_free_text(self, text: str, item) -> str | None:
        """The free-text gates (length, relevance) for the answer to `item`: None or the reason."""
        return None if self.free_text is None else self.free_text.check(text, item)

    def _semantic(self, text: str):
        """The semantic index when `text` is the free-text answer the gates just passed, else None."""
        gates = self.free_text
        return gates.semantic if gates is not None and gates.passed == text else None

    def find(self, text: str) -> str | None:
        """The reason `text` is a duplicate of an accepted answer, or None."""
        norm = _normalized_hash(text)
        if norm in self.exact:
            return f"exact duplicate of {self.exact[norm]}"
        sh = shingles(text)
        n = len(sh)
        for key in _lsh_keys(sh):
            for other in self.buckets.get(key, ()):
                o = self.sets[other]
                common = len(sh & o)  # |union| = |sh| + |o| - |common|, without building the union
                if common / max(n + len(o) - common, 1) >= self.threshold:
                    return f"near duplicate of {other}"
        semantic = self._semantic(text)
        return semantic.find(text) if semantic is not None else None

    def add(self, item_id: str, text: str) -> None:
        """An accepted answer: into the exact and MinHash indexes, and into the semantic one when it is the
        free-text answer the gates just passed."""
        semantic = self._semantic(text)
        if semantic is not None:
            semantic.add(item_id, text)
        self.exact.setdefault(_normalized_hash(text), item_id)
        sh = shingles(text)
        self.sets[item_id] = sh
        buckets = self.buckets
        for key in _lsh_keys(sh):
            # a tuple, extended in arrival order: buckets hold one or two ids, and tuples of strings
            # leave the garbage collector's lists (8 lists per answer made its collections 5x dearer)
            buckets[key] = buckets.get(key, ()) + (item_id,)


@lru_cache(maxsize=512)
def _lsh_keys(sh: frozenset) -> tuple[tuple, ...]:
    """The LSH band keys of a shingle set (cached: find and add ask for the same answer's keys)."""
    if not sh:
        return ()
    sig = _minhash(sh).tolist()
    rows = N_PERM // BANDS
    # (band, its rows' values): zip of strided slices builds the same tuples in C
    return tuple(zip(range(BANDS), *(sig[r::rows] for r in range(rows))))
