"""What a question asks: clinical advice, a list over the targets register, a follow-up, its specifics.

Rules written by hand: they are a few regular expressions over the question, not a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from assistant.retrieval import GLOSSARY, stems

_CLINICAL = [
    r"\b(?:dose|doses|dosage|dosing|mg|mcg|micrograms?|milligrams?)\b",
    r"\b(?:my|this|a) patient(?:'s)?\b(?! experience)",
    r"\b(?:should|can|do|shall) (?:i|we) (?:give|prescribe|start|stop|treat|increase|reduce|refer)\b",
    r"\bfirst[- ]line (?:drug|treatment|medication|therapy|antibiotic)\b",
    r"\b\d+[- ](?:year|month|week)[- ]old\b",
    r"\b(?:diagnose|treat|prescribe for)\s+(?:him|her|them|me)\b",
]
_FOLLOW_UP = re.compile(
    r"^(?:and|but|so|also|what about|how about|and what|by when|when)\b|\b(?:it|that|this|they|those|these|its)\b",
    re.I,
)
_LIST = re.compile(
    r"\b(?:which|what|list|show|all)\b.*\b(?:objectives|targets|priorities|ambitions)\b"
    r"|\b(?:objectives|targets)\b.*\b(?:are|due)\b",
    re.I,
)
_NOT_LIST = re.compile(r"\b(?:which|what|under which) (?:area|heading|section|theme)\b", re.I)
_WORD_NUMBERS = {
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
}
_MONTH_YEAR = re.compile(
    r"\b(january|february|march|april|may|june|july|august|september|october|november|december)\s+(\d{4})\b",
    re.I,
)
_STOP = set(
    "the a an of and or for to in on by with with at is are be objective objectives target targets".split()
)


def is_clinical(question: str) -> bool:
    """Whether the question asks for individual clinical advice (doses, a patient's diagnosis).

    >>> is_clinical("What dose of amoxicillin should I give a 5-year-old?")
    True
    >>> is_clinical("What dementia diagnosis rate should we recover to?")
    False
    """
    return any(re.search(p, question, re.I) for p in _CLINICAL)


def rewrite_follow_up(question: str, history: list[dict[str, str]] | None) -> str:
    """Attach the previous question's topic to a follow-up ("and by when?") so retrieval finds it.

    >>> rewrite_follow_up("and by when?", [{"role": "user", "content": "What is the A&E 4-hour target?"}])
    'What is the A&E 4-hour target? and by when?'
    """
    previous = [t["content"] for t in history or [] if t.get("role") == "user" and t.get("content")]
    if not previous:
        return question
    words = re.findall(r"\w+", question)
    if len(words) <= 5 or _FOLLOW_UP.search(question):
        return f"{previous[-1]} {question}"
    return question


# A number word pins a figure only as a measure ("six weeks"), not as a count of what is asked for
# ("the two scenarios").
_UNIT = r"(?:hours?|days?|weeks?|months?|years?|minutes?|per cent|percent|million|billion|thousand)\b"
_MEASURE_WORD = re.compile(rf"\b({'|'.join(_WORD_NUMBERS)})\b(?=[\s-]+{_UNIT})")
# "23/24" is the financial year 2023/24 and "March 24" is March 2024, as the documents write them.
_SHORT_YEAR = re.compile(r"(?<![\d/])([1-4]\d)/([1-4]\d)(?![\d/])")
_MONTH_SHORT_YEAR = re.compile(
    r"\b(jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|january|february|march|april|may|june|july"
    r"|august|september|october|november|december)\s+([1-4]\d)\b(?![\d/:%.,])"
)


def _financial_year(match: re.Match[str]) -> str:
    first, second = match.group(1), match.group(2)
    return f"20{first}/{second}" if int(second) == int(first) + 1 else match.group(0)


_LABELLED = re.compile(
    r"\b(cat|category|categories|stage|stages|band|bands|tier|tiers|phase|level|type|figure|table|section"
    r"|chapter|page|appendix|annex|box|step|part|recommendation|recommendations|priority|objective)[ \t]+(\d+)\b"
)
_LABEL_NAMES = {"cat": "category", "categories": "category"}
_QUANTITY = re.compile(
    r"\bhow (?:many|much|big|large|long|quickly|fast)\b|\bby how much\b"
    r"|\bwhat\b(?:\s+[\w&-]+){0,3}\s+(?:rate|percentage|proportion|share|level|number|figure|size|split)\b"
    r"|\bwhat (?:is|was|will be) the (?:projected|estimated|expected|forecast|total)\b",
    re.I,
)


def specifics(text: str) -> set[str]:
    """Numbers a question pins down (digits; number words and years included), for the coverage check.

    A number after a label ("cat 1", "stage 2", "band 5") is kept with its label, so "category 2" in a
    document does not answer a question about category 1.

    >>> sorted(specifics("the 6-week wait for 2025/26"))
    ['2025', '26', '6']
    >>> sorted(specifics("six weeks")), sorted(specifics("the two scenarios")), specifics("COVID-19")
    (['6'], [], set())
    >>> sorted(specifics("nhs-business-plan-2023-24.txt")), sorted(specifics("the 23/24 plan, by March 24"))
    (['2023', '24'], ['2023', '2024', '24'])
    >>> sorted(specifics("the cat 1 response target")), sorted(specifics("Improve category 2 response"))
    (['category 1'], ['category 2'])
    """
    lowered = _SHORT_YEAR.sub(_financial_year, text.lower())
    lowered = _MONTH_SHORT_YEAR.sub(lambda m: f"{m.group(1)} 20{m.group(2)}", lowered)
    lowered = _MEASURE_WORD.sub(lambda m: _WORD_NUMBERS[m.group(1)], lowered)
    found = labels(lowered)
    lowered = _LABELLED.sub(" ", lowered)
    # numbers inside names ("COVID-19") are not figures
    lowered = re.sub(r"(?<![\w-])[a-z]+-\d+\b(?![-/]\d)", " ", lowered)
    return found | {n.replace(",", "") for n in re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", lowered)}


def labels(text: str) -> set[str]:
    """Labelled numbers ("Recommendation 1", "cat 2" as "category 2").

    >>> sorted(labels("See Table 1 and cat 2"))
    ['category 2', 'table 1']
    """
    return {
        f"{_LABEL_NAMES.get(label, label.rstrip('s'))} {number}"
        for label, number in _LABELLED.findall(text.lower())
    }


_COUNTED = re.compile(r"\bhow many (?:more |additional |extra |new )?((?:[\w&-]+ ){0,3}[\w&-]+)", re.I)


def counted_things(question: str) -> list[str]:
    """Stems of what a "how many ..." question counts.

    >>> counted_things("How many more general practice appointments?")
    ['general', 'practic', 'appoint']
    """
    match = _COUNTED.search(question)
    return stems(match.group(1)) if match else []


_MEASURED = re.compile(
    r"\bwhat(?:\s+(?:is|are|was|were|will be|should be))?(?:\s+the)?((?:\s+[\w&-]+){1,3}?)\s+"
    r"(?:rate|percentage|proportion|share|split|ratio)\b",
    re.I,
)


def measured_things(question: str) -> list[str]:
    """Stems of what a "what is the X rate / split" question measures (X).

    >>> measured_things("What is the gender split of the workforce?"), measured_things("What percentage of patients?")
    (['gender'], [])
    """
    match = _MEASURED.search(question)
    return stems(match.group(1)) if match else []


def counts(text: str, things: list[str], window: int = 3) -> bool:
    """Whether `text` puts a number just before one of `things` ("50 million more appointments").

    >>> counts("deliver 50 million more appointments", ["appoint"]), counts("within two weeks", ["appoint"])
    (True, False)
    """
    words = re.findall(r"[\w&%.,-]+", text.lower())
    for i, word in enumerate(words):
        if re.fullmatch(r"[£$]?\d[\d,.]*%?", word) or word in _WORD_NUMBERS:
            if set(stems(" ".join(words[i + 1 : i + 1 + window]))) & set(things):
                return True
    return False


_ACRONYM = re.compile(r"\b[A-Z][A-Z&]{1,5}(?=s?\b)")


def acronyms(question: str) -> list[str]:
    """Abbreviations the question names, lower-cased ("IAPT", "A&E"): they name its subject.

    >>> acronyms("What recovery rate should IAPT services achieve in A&E?")
    ['iapt', 'a&e']
    """
    return [a.lower() for a in _ACRONYM.findall(question)]


# "a 10-year plan", "the 4-hour standard": a number naming a kind of thing, not a quantity of it;
# "over the next 10 years": the horizon of a statement, not its figure
_DESCRIPTOR = re.compile(
    rf"\b\d+-{_UNIT}|\b(?:next|last|past|coming|over)\s+\d+\s+(?:years?|months?|decades?)\b", re.I
)
_YEAR = re.compile(r"\b(?:19|20)\d{2}(?:[/-]\d{2}(?:\d{2})?)?\b")


def figures(text: str) -> set[str]:
    """The quantities a text states: its numbers less labels ("Table 1") and years ("2020/21").

    >>> sorted(figures("Table 1: 46,000 WTEs in 2020/21, up 69% by 2030 in a 10-year plan"))
    ['46000', '69']
    >>> figures("the challenges facing the workforce in the next 10 years")
    set()
    """
    text = _DESCRIPTOR.sub(" ", _YEAR.sub(" ", text))
    return {n for n in specifics(text) if " " not in n}


_DURATION = re.compile(
    rf"\b(?:\d[\d,.]*|{'|'.join(_WORD_NUMBERS)})[\s-]+(?:hours?|days?|weeks?|months?|years?|minutes?)\b", re.I
)


def durations(text: str) -> set[str]:
    """The figures of a text that are lengths of time ("30 minutes", "two weeks").

    >>> sorted(durations("an average of 30 minutes, within two weeks, 5,000 beds"))
    ['2', '30']
    """
    return figures(text) - figures(_DURATION.sub(" ", text))


def asks_for_a_figure(question: str) -> bool:
    """Whether the question asks for a quantity ("how many", "what percentage", "what ... rate").

    >>> asks_for_a_figure("What recovery rate should IAPT services achieve?")
    True
    >>> asks_for_a_figure("Is there an objective for perinatal mental health?")
    False
    """
    return bool(_QUANTITY.search(question) or _MEASURED.search(question))


@dataclass(frozen=True)
class ListQuery:
    """A question over the targets register: rows of these areas and/or with this deadline."""

    areas: tuple[str, ...]
    deadline: str | None


def list_query(question: str, areas: list[str]) -> ListQuery | None:
    """Recognise "which mental health objectives...", "objectives due by March 2024" and similar.

    >>> list_query("Which mental health objectives are there?", ["Mental health", "Cancer"])
    ListQuery(areas=('Mental health',), deadline=None)
    """
    if not _LIST.search(question) or _NOT_LIST.search(question):
        return None
    words = set(_words(question))
    for word in list(words):
        if word in GLOSSARY:
            words |= set(_words(GLOSSARY[word]))
    matched = []
    for area in areas:
        area_words = [w for w in _words(area) if w not in _STOP]
        if area_words and sum(w in words for w in area_words) / len(area_words) >= 0.6:
            matched.append(area)
    # a more specific area wins: "urgent and emergency care" is not also "primary care"
    matched = [a for a in matched if not any(a != b and set(_words(a)) < set(_words(b)) for b in matched)]
    month = _MONTH_YEAR.search(question)
    deadline = f"{month.group(1).capitalize()} {month.group(2)}" if month else None
    if not matched and not deadline:
        return None
    return ListQuery(tuple(matched), deadline)


def select_targets(query: ListQuery, targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Register rows that match a list query."""
    rows = targets
    if query.areas:
        rows = [t for t in rows if t.get("area") in query.areas]
    if query.deadline:
        rows = [t for t in rows if (t.get("deadline") or "").lower() == query.deadline.lower()]
    return rows


def _words(text: str) -> list[str]:
    return [w.rstrip("s") if len(w) > 3 else w for w in re.findall(r"[a-z0-9&]+", text.lower())]
