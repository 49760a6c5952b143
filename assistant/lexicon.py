"""Words: stems and stopwords, the glossary (a data file with a source per entry), and a corpus's vocabulary.

    vocabulary = Vocabulary.from_texts(chunk_texts)
    vocabulary.correct("hypertenson")         # "hypertension" (a word the documents use, one edit away)
    vocabulary.expansions("the SPR")          # ['single patient record'] when a document defines "(SPR)"

Everything that decides whether two texts share words goes through `stems` here, so questions,
passages and BM25 agree on what a word is.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOKEN = r"(?u)\b\w+(?:&\w+)*\b"
GLOSSARY_FILE = Path(__file__).with_name("data") / "glossary.tsv"
# Words that shape a question but say nothing of its topic.
QUESTION_WORDS = frozenset(
    "what whats which who whom whose when where why how does do did is are was were should would could can will "
    "me us we our you your i tell say says said mentioned mention about any there this that these those "
    "s its it's much many".split()
)
# Words that frame what is asked (a target, its date, a number) rather than which topic it is about:
# "what is the dementia target" and "dementia" ask about the same topic.
FRAME_WORDS = frozenset(
    "target targets objective objectives ambition ambitions goal goals aim aims standard standards plan plans "
    "priority priorities rate rates number numbers figure figures percentage percentages percent proportion "
    "share level levels deadline deadlines date dates time times deliver delivered meant supposed expected "
    "need needs needed get got want wanted year years month months week weeks day days hour hours "
    "minute minutes key main thing things stuff anything something else also again document documents "
    "report reports say says nhs national please give show list mention mentioned mentions actual actually "
    "right exactly really ok okay thanks just like know more extra additional new other else apart one due vs "
    "versus see kind kinds type types sort go going far back now currently whether make made get gets like also "
    "even still much way ways happen happening done doing said plus big large size many according"
    " january february march april may june july august september october november december".split()
)


@functools.cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def bm25_tokens(texts: list[str], ids: bool = True) -> Any:
    """BM25's tokens of each text (bm25s: TOKEN words, English stopwords, stemmed; "A&E" stays one token),
    as bm25s ids with their vocabulary, or with `ids=False` as lists of strings (the PostgreSQL store's)."""
    import bm25s

    return bm25s.tokenize(
        texts, token_pattern=TOKEN, stopwords="en", stemmer=_stemmer(), return_ids=ids, show_progress=False
    )


def stem(word: str) -> str:
    """The English (Porter-family) stem of one lower-case word."""
    return str(_stemmer().stemWord(word))


@functools.cache
def english() -> Any:
    """pyspellchecker's English dictionary (loaded once, ~0.1 s)."""
    from spellchecker import SpellChecker

    return SpellChecker(distance=1)


@functools.cache
def stopwords() -> frozenset[str]:
    """The classic English stopword list (the `stopwords` package's 175 words) plus question words."""
    import stopwords as stopword_lists

    return frozenset(stopword_lists.get_stopwords("english")) | QUESTION_WORDS


def words(text: str) -> list[str]:
    """Lower-case words of a text ("A&E" stays one word)."""
    return re.findall(r"[a-z0-9&]+", text.lower())


def stems(text: str) -> list[str]:
    """Stemmed content words (stopwords and bare numbers dropped), as BM25 and evidence checks see them.

    >>> stems("What are the A&E waiting times?")
    ['a&e', 'wait', 'time']
    """
    return list(_stems(text))


@functools.lru_cache(maxsize=8192)
def _stems(text: str) -> tuple[str, ...]:
    # cached: a chunk's text is stemmed once for all of its passages
    stop = stopwords()
    return tuple(stem(w) for w in words(text) if w not in stop and not w.isdigit())


def topic_stems(text: str) -> list[str]:
    """Content stems less the frame words: what a question is about, not what it asks for.

    >>> topic_stems("what is the stroke thrombolysis rate target?")
    ['stroke', 'thrombolysi']
    """
    frame = {stem(w) for w in FRAME_WORDS}
    return [s for s in stems(text) if s not in frame]


@dataclass(frozen=True)
class Entry:
    """One glossary entry: a term, the words it stands for, and where that is defined."""

    term: str
    expansion: str
    source: str


@functools.cache
def glossary(path: Path = GLOSSARY_FILE) -> dict[str, Entry]:
    """The glossary data file (term, expansion, source per line; # comments), keyed by lower-case term."""
    entries: dict[str, Entry] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        term, expansion, source = (part.strip() for part in line.split("\t"))
        entries[term.lower()] = Entry(term.lower(), expansion, source)
    return entries


@functools.cache
def _spelled_out() -> dict[str, str]:
    """Each glossary abbreviation's expansion in lower-case words ("iapt" -> "talking therapies")."""
    out = {}
    for term, entry in glossary().items():
        phrase = " ".join(w for w in entry.expansion.split() if not any(c.isupper() for c in w)).lower()
        if term.isalpha() and len(term) > 1 and " " in phrase:
            out[term] = " ".join(words(phrase))
    return out


_DEFINED = re.compile(r"((?:[A-Za-z][\w'-]*\s+){1,7}[A-Za-z][\w'-]*)\s*\(([A-Z][A-Z&]{1,7})s?\)")


def defined_abbreviations(text: str) -> dict[str, str]:
    """Abbreviations a text defines itself: "single patient record (SPR)" -> {"spr": "single patient record"}.

    The spelled-out words are the last words before the brackets whose initials spell the abbreviation.

    >>> defined_abbreviations("a move to a single patient record (SPR) and the Data Security and Protection Toolkit (DSPT)")
    {'spr': 'single patient record', 'dspt': 'Data Security and Protection Toolkit'}
    """
    found: dict[str, str] = {}
    for phrase, short in _DEFINED.findall(text):
        letters = [c for c in short.lower() if c.isalpha()]
        tokens = phrase.split()  # spelled out across a line break too
        for size in range(len(letters), len(tokens) + 1):
            candidate = tokens[-size:]
            initials = [
                t[0].lower() for t in candidate if t.lower() not in {"and", "of", "the", "for", "to", "in"}
            ]
            if initials == letters:
                found.setdefault(short.lower(), " ".join(candidate))
                break
    return found


@dataclass
class Vocabulary:
    """The words of a corpus: how many passages hold each stem, its surface words, its own abbreviations."""

    doc_freq: dict[str, int]
    passages: int
    surface: Counter[str] = field(default_factory=Counter)
    defined: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Vocabulary:
        doc_freq: Counter[str] = Counter()
        surface: Counter[str] = Counter()
        defined: dict[str, str] = {}
        n = 0
        for text in texts:
            n += 1
            doc_freq.update(set(stems(text)))
            surface.update(w for w in words(text) if w.isalpha())
            for short, long in defined_abbreviations(text).items():
                defined.setdefault(short, long)
        return cls(dict(doc_freq), n, surface, defined)

    def idf(self, stem_: str) -> float:
        """Inverse passage frequency: rare words weigh more (an unknown word weighs most)."""
        return math.log(1 + self.passages / (1 + self.doc_freq.get(stem_, 0)))

    def knows(self, word: str) -> bool:
        return word in self.surface or stem(word) in self.doc_freq

    def correct(self, word: str) -> str:
        """A word the documents use that `word` is a likely typo of ("hypertenson" -> "hypertension"), else `word`.

        Only words of five letters or more that neither the documents nor an English dictionary know
        ("virtual" is a word, not a typo of "vital") are corrected, to a word the documents use at least
        twice that is close in spelling (difflib ratio >= 0.8).
        """
        lowered = word.lower()
        if len(lowered) < 5 or not lowered.isalpha() or self.knows(lowered) or lowered in glossary():
            return word
        if english().known([lowered]):
            return word
        common = [w for w, n in self.surface.items() if n >= 2 and abs(len(w) - len(lowered)) <= 2]
        match = difflib.get_close_matches(lowered, common, n=1, cutoff=0.8)
        return match[0] if match else word

    def unused_forms(self, text: str) -> set[str]:
        """Stems of the glossary terms in `text`, and of their expansions, that the documents never use
        while they do use another form of the same entry ("MH" when they write "mental health")."""
        entries = glossary()
        unused: set[str] = set()
        for w in dict.fromkeys(words(text)):
            long = self.defined.get(w) or (entries[w].expansion if w in entries else None)
            if long is None:
                continue
            forms = [set(stems(w)), set(stems(long))]
            if any(f & set(self.doc_freq) for f in forms):
                unused |= {t for f in forms for t in f if t not in self.doc_freq}
        return unused

    def expansions(self, text: str) -> list[str]:
        """Glossary and document-defined expansions of the terms in `text`.

        >>> Vocabulary({}, 0, defined={"spr": "single patient record"}).expansions("is the SPR safe, A&E?")
        ['single patient record', 'accident and emergency A&E']
        """
        entries = glossary()
        asked = words(text)
        out = []
        for w in dict.fromkeys(asked):
            if w in self.defined:
                out.append(self.defined[w])
            elif w in entries:
                out.append(entries[w].expansion)
        # the other way: a spelled-out name meets its abbreviation ("talking therapies" -> IAPT)
        spaced = f" {' '.join(asked)} "
        for term, phrase in _spelled_out().items():
            if term not in asked and f" {phrase} " in spaced:
                out.append(term)
        return out
