"""One reader for the numbers in text: number words, figures with their kind, years, dates and labels.

Questions, passages, the targets register and the generative check all read numbers through here, so
"seventy seven percent", "77%" and "77 per cent" are the same figure everywhere.

    digits("is it two million pounds for forty wards?")   # "is it 2000000 pounds for 40 wards?"
    read("£1 billion to create an additional 5,000 hospital beds")  # [Figure(1e9, 'money'), Figure(5000, 'count')]
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

MONTHS = "january february march april may june july august september october november december".split()
_MONTH_ABBREVIATIONS = {m[:3]: m for m in MONTHS} | {"sept": "september"}
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*"

# Units of time as people type them ("4hr", "65wk", "2 hrs") and as documents write them.
_TIME_UNITS = {
    "minute": r"min(?:ute)?s?",
    "hour": r"h(?:ou)?rs?|hours?|h",
    "day": r"days?",
    "week": r"w(?:ee)?ks?|weeks?",
    "month": r"months?|mths?",
    "year": r"y(?:ea)?rs?|years?",
}
_TIME = "|".join(f"(?P<{unit}>{pattern})" for unit, pattern in _TIME_UNITS.items())
_SCALE = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "mn": 1e6, "billion": 1e9, "bn": 1e9, "b": 1e9}
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SMALL_WORDS = "one two three four five six seven eight nine ten eleven twelve".split()
# Fractions people use for shares ("three quarters of trusts"), as the percentages documents write.
_FRACTIONS = {
    "three quarters": "75%",
    "3 quarters": "75%",
    "a quarter": "25%",
    "one quarter": "25%",
    "two thirds": "66.7%",
    "a third": "33.3%",
    "one third": "33.3%",
    "half": "50%",
}
_FRACTION = re.compile(r"\b(?:" + "|".join(k.replace(" ", r"\s+") for k in _FRACTIONS) + r")\b", re.I)

_MONEY = re.compile(
    rf"(?P<cur>[£$€])\s?(?P<n>{_NUMBER})(?:\s?(?P<scale>thousand|million|billion|bn|mn|m|k|b)\b)?"
    rf"|\b(?P<n2>{_NUMBER})\s?(?P<scale2>thousand|million|billion|bn|mn|m|k)?\s?(?:pounds|gbp)\b",
    re.I,
)
_PERCENT = re.compile(rf"(?P<n>{_NUMBER})\s?(?:%|per\s?cent\b|percent\b|pc\b)", re.I)
_DURATION = re.compile(rf"\b(?P<n>{_NUMBER})(?:\s?[-–]\s?|\s?)(?:{_TIME})\b", re.I)
_COUNT = re.compile(
    rf"(?<![\w/.£$€])(?P<n>{_NUMBER})(?:\s?(?P<scale>thousand|million|billion)\b)?(?![\w/%])", re.I
)
_RANGE = re.compile(rf"(?<![\w/])(?P<a>{_NUMBER})\s?[–-]\s?(?P<b>{_NUMBER})(?![\w/])")

_FINANCIAL_YEAR = re.compile(r"\b((?:19|20)\d\d)\s?[/-]\s?(\d\d)\b(?![/-]?\d)")
_SHORT_FINANCIAL_YEAR = re.compile(r"(?<![\d/£$.,])([1-4]\d)/([1-4]\d)(?![\d/%])")
_YEAR = re.compile(r"(?<![\d£$.,/])((?:19|20)\d\d)(?![\d%])")
MONTH_YEAR = _MONTH_YEAR = re.compile(rf"\b({_MONTH})\s+((?:19|20)\d\d|[1-4]\d)\b(?![\d/:%]|[.,]\d)", re.I)

# "cat 2", "Tier 3", "Recommendation 1": a number that names a thing, not a quantity of it.
_LABELLED = re.compile(
    r"\b(cat|category|categories|stage|stages|band|bands|tier|tiers|phase|level|type|figure|fig|table|section"
    r"|chapter|page|appendix|annex|box|step|part|recommendation|recommendations|priority|objective|cohort"
    r"|cohorts|workshop|workshops|wave|q|question)\.?[ \t]*(\d+(?:(?:\s*,\s*|\s+(?:and|or|&|to)\s+)\d+\b)*)\b",
    re.I,
)
_LABEL_NAMES = {"cat": "category", "categories": "category", "fig": "figure", "q": "question"}
# "COVID-19", "Core20PLUS5": numbers inside names are not figures.
_NAME_NUMBER = re.compile(r"\b[A-Za-z]+\d*[A-Za-z]*-?\d+[A-Za-z]+\d*\b|\b[A-Za-z]{2,}-\d+\b(?![-/]\d)")


@dataclass(frozen=True)
class Figure:
    """A quantity a text states: its value, its kind and, for lengths of time, the unit."""

    value: float
    kind: str  # "percent" | "money" | "duration" | "count"
    unit: str = ""  # duration: minute/hour/day/week/month/year
    text: str = ""

    def same(self, other: Figure) -> bool:
        """Whether two figures state the same quantity, allowing the rounding people type ("67" for 66.7).

        >>> Figure(77, "percent").same(Figure(76.6, "percent")), Figure(80, "percent").same(Figure(85, "percent"))
        (True, False)
        """
        if self.kind != other.kind or self.unit != other.unit:
            return False
        return _rounds_to(other.value, self.value) or _rounds_to(self.value, other.value)


def _rounds_to(precise: float, rounded: float) -> bool:
    """Whether `precise` rounds to `rounded` at the precision `rounded` is written to."""
    text = f"{rounded:.6f}".rstrip("0").rstrip(".")
    places = len(text.split(".")[1]) if "." in text else 0
    return round(precise, places) == round(rounded, places)


@functools.cache
def _alpha2digit() -> object:
    from text_to_num import alpha2digit

    return alpha2digit


def digits(text: str) -> str:
    """`text` with number words as digits: "seventy seven" -> 77, "four thousand" -> 4000, "six weeks" -> 6 weeks.

    text2num converts number words from three up and leaves "one"/"two" alone ("no one", "one of"); a
    small number word is also converted when a unit of time or measure follows it ("two weeks").

    >>> digits("is the hypertension target seventy seven percent")
    'is the hypertension target 77 percent'
    >>> digits("within two weeks, one of the two scenarios, a five-year programme")
    'within 2 weeks, one of the two scenarios, a 5-year programme'
    >>> digits("three quarters of trusts, more than half")
    '75% of trusts, more than 50%'
    """
    # text2num reads a lone scale word as a number ("£1 billion" -> "£1 1000000000"): keep those as words.
    kept = re.sub(
        r"(\d)(\s?)(thousand|million|billion)\b",
        lambda m: f"{m[1]}{m[2]}\x00{m[3][0].lower()}",
        text,
        flags=re.I,
    )
    converted = str(_alpha2digit()(kept, "en"))  # type: ignore[operator]
    converted = re.sub(
        "\x00([tmb])", lambda m: {"t": "thousand", "m": "million", "b": "billion"}[m[1]], converted
    )
    converted = _FRACTION.sub(lambda m: _FRACTIONS[" ".join(m.group(0).lower().split())], converted)
    small = "|".join(_SMALL_WORDS)
    return re.sub(
        rf"\b({small})(?=[\s-]+(?:{_TIME}|per\s?cent|percent|million|billion|thousand)\b)",
        lambda m: str(_SMALL_WORDS.index(m.group(1).lower()) + 1),
        converted,
        flags=re.I,
    )


def _value(number: str, scale: str | None = None) -> float:
    return float(number.replace(",", "")) * _SCALE.get((scale or "").lower(), 1.0)


@functools.lru_cache(maxsize=8192)
def read(text: str) -> tuple[Figure, ...]:
    """The quantities a text states, in order: percentages, money, lengths of time and counts.

    Years, financial years, month-and-year dates, labels ("category 2", "Table 1") and numbers inside
    names ("COVID-19") are not quantities. Number words count ("seventy seven percent").

    >>> [(f.value, f.kind, f.unit) for f in read("no less than 76% of patients seen within 4 hours by March 2024")]
    [(76.0, 'percent', ''), (4.0, 'duration', 'hour')]
    >>> [(f.value, f.kind) for f in read("£1 billion to create an additional 5,000 hospital beds in 2023/24")]
    [(1000000000.0, 'money'), (5000.0, 'count')]
    >>> read("Improve category 2 ambulance response times (Table 1) after COVID-19, over the next 10 years")
    ()
    """
    text = _blank(digits(text))
    found: list[tuple[int, Figure]] = []
    taken = [False] * len(text)

    def claim(match: re.Match[str], figure: Figure) -> None:
        if any(taken[match.start() : match.end()]):
            return
        taken[match.start() : match.end()] = [True] * (match.end() - match.start())
        found.append((match.start(), figure))

    for m in _MONEY.finditer(text):
        claim(
            m, Figure(_value(m["n"] or m["n2"], m["scale"] or m["scale2"]), "money", "", m.group(0).strip())
        )
    for m in _PERCENT.finditer(text):
        claim(m, Figure(_value(m["n"]), "percent", "", m.group(0).strip()))
    for m in _DURATION.finditer(text):
        unit = next(u for u in _TIME_UNITS if m[u])
        claim(m, Figure(_value(m["n"]), "duration", unit, m.group(0).strip()))
    for m in _COUNT.finditer(text):
        claim(m, Figure(_value(m["n"], m["scale"]), "count", "", m.group(0).strip()))
    # cached: the same chunk is read for each of its passages
    return tuple(figure for _, figure in sorted(found, key=lambda pair: pair[0]))


# "over the next 10 years": the horizon of a statement, not a figure it states
_HORIZON = re.compile(
    r"\b(?:next|last|past|coming|over the next|in the next)\s+\d+\s+(?:years?|months?|decades?)\b", re.I
)


def _blank(text: str) -> str:
    """`text` with years, dates, labels, names and horizons blanked out (same length, so spans stay put)."""
    for pattern in (_NAME_NUMBER, _LABELLED, _MONTH_YEAR, _FINANCIAL_YEAR, _YEAR, _HORIZON):
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


def years(text: str) -> set[str]:
    """Years and financial years a text names, as "2024" and "2023/24" ("23/24" and "March 24" too).

    >>> sorted(years("the 23/24 plan, by March 24, further improvement in 2024/25"))
    ['2023/24', '2024', '2024/25']
    >>> sorted(years("aged 0-25, 12-15 under 18s, 2 hour standard"))
    []
    """
    found: set[str] = set()
    lowered = text.lower()
    for m in _FINANCIAL_YEAR.finditer(lowered):
        if int(m.group(2)) == (int(m.group(1)) + 1) % 100:
            found.add(f"{m.group(1)}/{m.group(2)}")
    for m in _SHORT_FINANCIAL_YEAR.finditer(lowered):
        if int(m.group(2)) == int(m.group(1)) + 1:
            found.add(f"20{m.group(1)}/{m.group(2)}")
    for m in _MONTH_YEAR.finditer(lowered):
        year = m.group(2)
        found.add(year if len(year) == 4 else f"20{year}")
    rest = _FINANCIAL_YEAR.sub(" ", lowered)
    found |= {m.group(1) for m in _YEAR.finditer(rest)}
    return found


def dates(text: str) -> set[str]:
    """Month-and-year dates, normalised ("March 24" -> "march 2024").

    >>> sorted(dates("by the end of March 2024, or Sept 25"))
    ['march 2024', 'september 2025']
    """
    out = set()
    for m in _MONTH_YEAR.finditer(text.lower()):
        month = _MONTH_ABBREVIATIONS.get(m.group(1)[:4], _MONTH_ABBREVIATIONS.get(m.group(1)[:3], m.group(1)))
        year = m.group(2) if len(m.group(2)) == 4 else f"20{m.group(2)}"
        out.add(f"{month} {year}")
    return out


def labels(text: str) -> set[str]:
    """Labelled numbers ("Recommendation 1", "cat 2" as "category 2", "Tier 3").

    >>> sorted(labels("See Table 1, cat 2 and tier 3"))
    ['category 2', 'table 1', 'tier 3']
    >>> sorted(labels("cancers diagnosed at stages 1 and 2")), sorted(labels("band 6 or 7"))
    (['stage 1', 'stage 2'], ['band 6', 'band 7'])
    """
    return {
        f"{_LABEL_NAMES.get(label.lower(), label.lower().rstrip('s'))} {number}"
        for label, numbers in _LABELLED.findall(text)
        for number in re.findall(r"\d+", numbers)
    }


def numbers(text: str) -> set[str]:
    """Every number in a text as a digit string, separators dropped (the verification check's view).

    >>> sorted(numbers("76% within 4 hours; 26,000 roles"))
    ['26000', '4', '76']
    """
    return {m.group(0).replace(",", "").rstrip(".") for m in re.finditer(r"\d+(?:[.,]\d+)*", text)}
