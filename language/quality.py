"""Quality filters: clean an answer, or reject it with a reason that is kept in the ledger.

Order: strip reasoning blocks; reject empty, template-token leaks, truncated (the server said it hit
the token limit), too short, refusing, looping on itself, prompt-echoing; then exact duplicates (normalized text) and
near duplicates (word 3-gram Jaccard at or above the threshold, found through MinHash LSH buckets
and confirmed exactly).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

THINK_BLOCK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>\s*", re.S | re.I)
UNCLOSED_THINK = re.compile(r"^\s*<(think|thinking|reasoning)>.*", re.S | re.I)
TEMPLATE_TOKENS = re.compile(r"<\|[a-z_]+\|>|<\|im_(start|end)\|>|</?s>|\[/?INST\]|<\|eot_id\|>", re.I)
REFUSALS = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry, (but )?i|i cannot|i can'?t|i'?m unable|i am unable|as an ai\b|"
    r"i'?m not able|i am not able|i won'?t be able)", re.I)
WORD = re.compile(r"[a-z0-9]+(?:['._-][a-z0-9]+)*")
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


@lru_cache(maxsize=512)
def words(text: str) -> tuple[str, ...]:
    """Lower-case words; cached because every filter of one answer asks for them."""
    return tuple(WORD.findall(text.lower()))


@lru_cache(maxsize=512)
def shingles(text: str) -> frozenset[str]:
    w = words(text)
    return frozenset(" ".join(w[i:i + 3]) for i in range(max(len(w) - 2, 1)))


@lru_cache(maxsize=512)
def _normalized_hash(text: str) -> str:
    return hashlib.sha256(" ".join(words(text)).encode()).hexdigest()


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


def repetition(text: str) -> float:
    """Share of the word 4-grams that already occurred earlier in the text."""
    w = words(text)
    grams = [" ".join(w[i:i + 4]) for i in range(len(w) - 3)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def _echoes(text: str, prompt: str) -> bool:
    a, p = shingles(text), shingles(prompt)
    if not a or not p:
        return False
    return len(a & p) / len(a) >= 0.6 or " ".join(words(prompt)) in " ".join(words(text))


def _minhash(sh: frozenset[str]) -> np.ndarray:
    # two C-speed 32-bit checksums make a stable 64-bit shingle hash (blake2b per shingle was the
    # runner's hottest line)
    x = np.array([(zlib.crc32(b) << 32 | zlib.adler32(b)) & _MASK for b in (t.encode() for t in sh)],
                 dtype=np.uint64)
    return ((np.multiply.outer(x, _A) + _B) % np.uint64(_MASK)).min(axis=0)


@dataclass
class DuplicateIndex:
    """Accepted answers so far: exact (normalized) hashes and MinHash LSH buckets of 3-gram sets."""

    threshold: float = 0.9
    exact: dict[str, str] = field(default_factory=dict)
    buckets: dict[tuple, list[str]] = field(default_factory=dict)
    sets: dict[str, frozenset] = field(default_factory=dict)

    def find(self, text: str) -> str | None:
        """The reason `text` is a duplicate of an accepted answer, or None."""
        norm = _normalized_hash(text)
        if norm in self.exact:
            return f"exact duplicate of {self.exact[norm]}"
        sh = shingles(text)
        for key in _lsh_keys(sh):
            for other in self.buckets.get(key, ()):
                o = self.sets[other]
                if len(sh & o) / max(len(sh | o), 1) >= self.threshold:
                    return f"near duplicate of {other}"
        return None

    def add(self, item_id: str, text: str) -> None:
        self.exact.setdefault(_normalized_hash(text), item_id)
        sh = shingles(text)
        self.sets[item_id] = sh
        for key in _lsh_keys(sh):
            self.buckets.setdefault(key, []).append(item_id)


@lru_cache(maxsize=512)
def _lsh_keys(sh: frozenset) -> tuple[tuple, ...]:
    """The LSH band keys of a shingle set (cached: find and add ask for the same answer's keys)."""
    if not sh:
        return ()
    sig = _minhash(sh).tolist()
    rows = N_PERM // BANDS
    return tuple((b, *sig[b * rows:(b + 1) * rows]) for b in range(BANDS))
