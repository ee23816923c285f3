"""Free-text questions matched against the FAQ: BM25 with synonyms and typo tolerance.

Latin-script text is split into words (lower-cased, lightly stemmed, stop words dropped);
Chinese (and other CJK) text into single characters and character bigrams, which needs no
dictionary: jieba's takes about a second to load and segments short customer questions no
better for this purpose (bench/knowledge.py compares them). A misspelt word that is not in
the index is replaced by its closest indexed word (rapidfuzz) when that is close enough; a
miswritten Chinese character still leaves its neighbours' unigrams to match.

The index is built once per policy load (:func:`KnowledgeIndex.build`), never per message.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from routing.policy.selfservice_parts import FaqEntry, SearchPolicy

_WORD = re.compile(r"[a-z0-9]+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_STOP_WORDS = """a an the i me my we our you your it its is are was were be been am do does did
    to of in
    on at for from by with and or but not no can could would should will shall may might
    this that these those there here what when where which who how why hi hello please
    thanks thank want wanted need know tell about have has had get got any some just so
    if than then also very much many ok okay yes"""
_STOP = frozenset(_STOP_WORDS.split())
_CJK_STOP = frozenset("的了吗呢吧啊呀我你您他她它是在有么什怎哪请问个这那都就也还和与")
_CJK_STOP_BIGRAMS = frozenset({"什么", "怎么", "请问", "我的", "你们", "可以", "一下", "是否"})
# Weight of a misspelt word matched to its closest indexed word, relative to an exact hit.
_TYPO_WEIGHT = 0.8
# Weight of a single CJK character in a question, relative to a two-character term.
_CJK_CHAR_WEIGHT = 0.3
# A confident answer must also lead the runner-up's BM25 score by this factor.
_MARGIN = 1.3
# Question words count this many times: they say what the entry is about.
_QUESTION_BOOST = 2


def _stem(word: str) -> str:
    # Deliberately crude: it only needs to map a word's common forms to one token.
    for suffix, min_len in (("ing", 6), ("ies", 5), ("ed", 5), ("es", 5), ("s", 4)):
        if word.endswith(suffix) and len(word) >= min_len:
            stem = word[: -len(suffix)]
            return stem + "y" if suffix == "ies" else stem
    return word


def tokens(text: str) -> list[str]:
    """Index terms of a text: stemmed words, CJK characters and CJK bigrams."""
    out: list[str] = []
    for run in _WORD.findall(unicodedata.normalize("NFKC", text).lower()):
        if _CJK.match(run):
            chars = list(run)
            out += [c for c in chars if c not in _CJK_STOP]
            out += [a + b for a, b in itertools.pairwise(chars) if a + b not in _CJK_STOP_BIGRAMS]
        elif run not in _STOP:
            out.append(_stem(run))
    return out


def _whole(word: str) -> str | None:
    """The single index term of a one-word synonym (a latin word or a CJK bigram)."""
    ts = tokens(word)
    if len(ts) == 1 and _is_latin(ts[0]):
        return ts[0]
    cjk = [t for t in ts if len(t) == 2 and not _is_latin(t)]
    return cjk[0] if len(cjk) == 1 and len(word.strip()) == 2 else None


def _is_latin(term: str) -> bool:
    return not _CJK.match(term)


@dataclass(frozen=True)
class Match:
    entry_id: str
    # How much of the question this entry covers, 0-1 (idf-weighted share of its terms).
    confidence: float
    score: float  # BM25, for ranking


class KnowledgeIndex:
    """BM25 over FAQ entries (question, keywords and answer in every language)."""

    k1 = 1.2
    b = 0.75

    def __init__(
        self,
        docs: dict[str, list[str]],
        synonyms: Iterable[Sequence[str]],
        tokenize: Callable[[str], list[str]] = tokens,
    ) -> None:
        self._tokens = tokenize
        self._canon: dict[str, str] = {}
        for group in synonyms:
            # Only whole words map: a Chinese word's single characters are not its synonyms.
            terms = [t for t in (_whole(word) for word in group) if t]
            for t in terms:
                self._canon.setdefault(t, terms[0])
        self._docs = {eid: Counter(self._canonical(ts)) for eid, ts in docs.items()}
        self._lengths = {eid: sum(c.values()) for eid, c in self._docs.items()}
        n = len(self._docs)
        self._avg = (sum(self._lengths.values()) / n) if n else 1.0
        df: Counter[str] = Counter()
        for c in self._docs.values():
            df.update(c.keys())
        self._idf = {t: math.log(1 + (n - k + 0.5) / (k + 0.5)) for t, k in df.items()}
        self._max_idf = max(self._idf.values(), default=1.0)
        self._latin_vocab = [t for t in self._idf if _is_latin(t) and len(t) >= 3]

    @classmethod
    def build(
        cls,
        entries: Sequence[FaqEntry],
        search: SearchPolicy,
        tokenize: Callable[[str], list[str]] = tokens,
    ) -> KnowledgeIndex:
        """The index of these entries. ``tokenize`` is swappable for comparison (bench)."""
        docs: dict[str, list[str]] = {}
        for e in entries:
            question = [e.question] if isinstance(e.question, str) else list(e.question.values())
            answer = [e.answer] if isinstance(e.answer, str) else list(e.answer.values())
            kws = (
                list(e.keywords)
                if isinstance(e.keywords, tuple)
                else [k for ks in e.keywords.values() for k in ks]
            )
            terms: list[str] = []
            for q in question:
                terms += tokenize(q) * _QUESTION_BOOST
            for k in kws:
                terms += tokenize(k)
            for a in answer:
                terms += tokenize(a)
            docs[e.id] = terms
        return cls(docs, search.synonyms, tokenize)

    def _canonical(self, terms: Iterable[str]) -> list[str]:
        return [self._canon.get(t, t) for t in terms]

    def _query_terms(self, query: str) -> list[tuple[str, float]]:
        """(term, weight) pairs: exact terms weigh 1, typo-corrected ones less."""
        out: list[tuple[str, float]] = []
        for raw in self._tokens(query):
            term = self._canon.get(raw, raw)
            if not _is_latin(term):
                # A single character says less than a two-character word.
                out.append((term, _CJK_CHAR_WEIGHT if len(term) == 1 else 1.0))
                continue
            if term in self._idf or len(term) < 4:
                out.append((term, 1.0))
                continue
            best = process.extractOne(term, self._latin_vocab, scorer=fuzz.ratio, score_cutoff=75)
            if best is not None:
                out.append((self._canon.get(best[0], best[0]), _TYPO_WEIGHT))
            else:
                out.append((term, 1.0))
        return out

    def _weight(self, term: str) -> float:
        """A term's share of the question. Unknown words weigh half (customers wrap questions
        in words no entry has, which should lower confidence, not destroy it); an unknown
        CJK bigram weighs nothing, as most are the seam between two words."""
        if term in self._idf:
            return self._idf[term]
        if _is_latin(term):
            return self._max_idf / 2
        return 0.0 if len(term) > 1 else self._max_idf / 4

    def search(
        self, query: str, *, visible: Callable[[str], bool] | None = None, limit: int = 5
    ) -> list[Match]:
        """Entries ranked best first (only those ``visible`` allows)."""
        terms = self._query_terms(query)
        if not terms:
            return []
        weights: dict[str, float] = {}
        for t, w in terms:
            weights[t] = max(weights.get(t, 0.0), w)
        total = sum(w * self._weight(t) for t, w in weights.items())
        matches: list[Match] = []
        for eid, counts in self._docs.items():
            if visible is not None and not visible(eid):
                continue
            length = self._lengths[eid]
            score = covered = 0.0
            for t, w in weights.items():
                tf = counts.get(t, 0)
                if not tf:
                    continue
                idf = self._idf[t]
                norm = tf + self.k1 * (1 - self.b + self.b * length / self._avg)
                score += w * idf * tf * (self.k1 + 1) / norm
                covered += w * idf
            if score > 0:
                matches.append(Match(eid, round(covered / total, 4) if total else 0.0, score))
        matches.sort(key=lambda m: (-m.confidence, -m.score, m.entry_id))
        return matches[:limit]


@dataclass(frozen=True)
class Answer:
    best: Match | None  # set when confident: answer it straight away
    suggestions: list[Match]  # otherwise (or after "no"), the next best to offer


def decide(matches: Sequence[Match], search: SearchPolicy, exclude: str | None = None) -> Answer:
    """Answer at once only when the best match covers the question and clearly leads."""
    ranked = [m for m in matches if m.entry_id != exclude and m.confidence >= search.minimum]
    if exclude is None and ranked:
        top = ranked[0]
        runner = ranked[1] if len(ranked) > 1 else None
        if top.confidence >= search.confident and (
            runner is None or top.score >= _MARGIN * runner.score
        ):
            return Answer(top, ranked[1 : 1 + search.suggestions])
    return Answer(None, ranked[: search.suggestions])
