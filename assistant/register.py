"""The targets register as the app's Targets page shows it: readable rows, filtered by area, deadline and text.

    rows = register_rows(index.register)
    shown = filter_rows(rows, areas={"Primary care"}, before=date(2024, 3, 31), text="appointments")

A row's deadline is read as the last day it allows ("March 2024" -> 31 March 2024, "2023/24" -> the end
of that financial year, 31 March 2024; "2028" -> 31 December 2028), so "before" keeps what is due by then.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Collection, Iterable
from datetime import date
from typing import Any

from assistant.figures import MONTH_YEAR, dates

KINDS = ("objective", "priority")  # a table's row; a "Label: text" paragraph of a list (chunking.Target)
_FINANCIAL_YEAR = re.compile(r"\b((?:19|20)\d\d)/(\d\d)\b")
_YEAR = re.compile(r"\b((?:19|20)\d\d)\b")
_MONTHS = {name.lower(): n for n, name in enumerate(calendar.month_name) if name}


def deadline_end(deadline: str | None) -> date | None:
    """The last day a deadline allows, or None when it names no date.

    >>> deadline_end("March 2024"), deadline_end("2023/24"), deadline_end("2028"), deadline_end(None)
    (datetime.date(2024, 3, 31), datetime.date(2024, 3, 31), datetime.date(2028, 12, 31), None)
    """
    if not deadline:
        return None
    if MONTH_YEAR.search(deadline):
        month, year = sorted(dates(deadline))[0].split()
        number = _MONTHS[month]
        return date(int(year), number, calendar.monthrange(int(year), number)[1])
    if match := _FINANCIAL_YEAR.search(deadline):  # an NHS financial year ends on 31 March
        return date(int(match.group(1)) + 1, 3, 31)
    if match := _YEAR.search(deadline):
        return date(int(match.group(1)), 12, 31)
    return None


def register_rows(register: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The register's rows as the page's table: blank (not "None") where a row has no value."""
    return [
        {
            "kind": t.get("kind") or "objective",
            "area": t.get("area") or "",
            "objective": t.get("objective") or "",
            "figures": "; ".join(t.get("values") or []),
            "deadline": t.get("deadline") or "",
            "source": t.get("source") or "",
            "page": t.get("page"),
            "chunk_id": t.get("chunk_id") or "",
            "title": t.get("title") or "",
        }
        for t in register
    ]


def filter_rows(
    rows: Iterable[dict[str, Any]],
    areas: Collection[str] = (),
    before: date | None = None,
    text: str = "",
    kinds: Collection[str] = (),
) -> list[dict[str, Any]]:
    """The rows in one of `areas` and `kinds` (any when empty), due by `before`, holding every word of `text`.

    A row without a deadline is left out by `before`: it is not known to be due by then.

    >>> rows = register_rows([{"area": "A&E", "objective": "76% in 4 hours", "deadline": "March 2024"},
    ...                       {"area": "Beds", "objective": "5,000 beds", "kind": "priority"}])
    >>> [r["objective"] for r in filter_rows(rows, text="hours")], len(filter_rows(rows, before=date(2025, 1, 1)))
    (['76% in 4 hours'], 1)
    """
    words = text.casefold().split()
    out = []
    for row in rows:
        if areas and row["area"] not in areas or kinds and row["kind"] not in kinds:
            continue
        if before is not None and ((end := deadline_end(row["deadline"])) is None or end > before):
            continue
        haystack = " ".join(str(row[k]) for k in ("area", "objective", "figures", "deadline")).casefold()
        if all(word in haystack for word in words):
            out.append(row)
    return out
