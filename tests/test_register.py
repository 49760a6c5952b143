"""The Targets page's register: deadlines read as dates, and the page's own filters (one table per rule)."""

from __future__ import annotations

from datetime import date

import pytest

from assistant.register import deadline_end, filter_rows, register_rows

REGISTER = [
    {"kind": "objective", "area": "Urgent and emergency care", "objective": "76% of patients seen within 4 hours",
     "values": ["76%", "4 hours"], "deadline": "March 2024", "source": "objectives.txt", "page": None,
     "chunk_id": "a"},
    {"kind": "objective", "area": "Primary care", "objective": "Recruit 26,000 more ARRS roles",
     "values": ["26,000"], "deadline": "2023/24", "source": "objectives.txt", "page": None, "chunk_id": "b"},
    {"area": "Mental health", "objective": "Recover the dementia diagnosis rate to 66.7%",
     "values": ["66.7%"], "deadline": "March 2025", "source": "objectives.txt", "page": 3, "chunk_id": "c"},
    {"kind": "priority", "area": "Improving Ambulance Response and A&E Waiting Times",
     "objective": "Increasing Capacity: £1 billion to create an additional 5,000 hospital beds.",
     "values": ["£1 billion", "5,000"], "deadline": None, "source": "business-plan.txt", "page": None,
     "chunk_id": "d"},
]  # fmt: skip


@pytest.mark.parametrize(
    ("deadline", "end"),
    [
        ("March 2024", date(2024, 3, 31)),
        ("by the end of February 2028", date(2028, 2, 29)),  # a leap year's last day
        ("2023/24", date(2024, 3, 31)),  # an NHS financial year ends on 31 March
        ("2028", date(2028, 12, 31)),
        ("", None),
        (None, None),
        ("ongoing", None),
    ],
)
def test_a_deadline_is_read_as_the_last_day_it_allows(deadline: str | None, end: date | None) -> None:
    assert deadline_end(deadline) == end


def test_rows_show_blank_not_none_and_default_to_objectives() -> None:
    rows = register_rows(REGISTER)
    assert [r["kind"] for r in rows] == ["objective", "objective", "objective", "priority"]
    assert rows[3]["deadline"] == "" and rows[3]["figures"] == "£1 billion; 5,000"
    assert "None" not in {str(v) for r in rows for k, v in r.items() if k != "page"}


@pytest.mark.parametrize(
    ("filters", "kept"),
    [
        ({}, ["a", "b", "c", "d"]),
        ({"areas": {"Mental health"}}, ["c"]),
        ({"kinds": {"priority"}}, ["d"]),
        ({"text": "HOSPITAL beds"}, ["d"]),  # every word, any case
        ({"text": "beds dementia"}, []),  # words from two rows match neither
        ({"text": "76%"}, ["a"]),
        ({"text": "26,000"}, ["b"]),  # the figures column is searched too
        ({"before": date(2024, 3, 31)}, ["a", "b"]),  # due by then; no deadline is not "due"
        ({"before": date(2024, 3, 30)}, []),
        ({"before": date(2025, 12, 31), "areas": {"Primary care", "Mental health"}}, ["b", "c"]),
    ],
)
def test_filters_keep_the_rows_a_user_asked_for(filters: dict[str, object], kept: list[str]) -> None:
    rows = filter_rows(register_rows(REGISTER), **filters)  # type: ignore[arg-type]
    assert [r["chunk_id"] for r in rows] == kept
