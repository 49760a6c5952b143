"""Structure-aware chunking: one chunk per table row with its area, prose with sections, stable ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.chunking import chunk_documents, extract_deadline, extract_values
from assistant.loaders import load_file

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
OBJECTIVES = ROOT / "corpus" / "nhs-national-objectives-2023-24.txt"


def _targets(path: Path):  # noqa: ANN202
    return chunk_documents(load_file(path))


def test_real_table_gives_31_objectives_with_their_areas() -> None:
    chunks, targets = _targets(OBJECTIVES)
    assert len(targets) == 31
    by_area: dict[str, int] = {}
    for t in targets:
        by_area[str(t.area)] = by_area.get(str(t.area), 0) + 1
    assert by_area == {
        "Urgent and emergency care": 3,
        "Community health services": 2,
        "Primary care": 4,
        "Elective care": 2,
        "Cancer": 3,
        "Diagnostics": 2,
        "Maternity": 2,
        "Use of resources": 1,
        "Workforce": 1,
        "Mental health": 6,
        "People with a learning disability and autistic people": 2,
        "Prevention and health inequalities": 3,
    }


def test_a_and_e_row_is_one_whole_chunk_with_its_area() -> None:
    chunks, targets = _targets(OBJECTIVES)
    (row,) = [c for c in chunks if "76%" in c.page_content]
    assert row.page_content.startswith(
        "Urgent and emergency care — Improve A&E waiting times so that no less than 76% of patients are seen "
        "within 4 hours by March 2024 with further improvement in 2024/25"
    )
    assert row.metadata["area"] == "Urgent and emergency care"
    assert row.metadata["theme"] == "Recovering our core services and improving productivity"
    assert row.metadata["kind"] == "row"
    (target,) = [t for t in targets if t.chunk_id == row.metadata["chunk_id"]]
    assert (target.values, target.deadline) == (["76%", "4 hours"], "March 2024")
    text = OBJECTIVES.read_text(encoding="utf-8")
    span = text[row.metadata["start"] : row.metadata["end"]]
    assert span.startswith("ity\t\tImprove A&E") and span.endswith("in 2024/25")


def test_label_on_a_continuation_line_and_label_split_over_lines() -> None:
    _, targets = _targets(OBJECTIVES)
    maternity = [t for t in targets if "stillbirth" in t.objective][0]
    assert maternity.area == "Maternity"
    assert maternity.objective.endswith("maternal mortality and serious intrapartum brain injury")
    community = [t for t in targets if "direct referrals" in t.objective][0]
    assert community.area == "Community health services"


def test_second_hand_built_table_parses_exactly() -> None:
    _, targets = _targets(FIXTURES / "second-table.txt")
    expected = json.loads((FIXTURES / "second-table.expected.json").read_text(encoding="utf-8"))
    got = [
        {
            "area": t.area,
            "theme": t.theme,
            "objective": t.objective,
            "values": t.values,
            "deadline": t.deadline,
        }
        for t in targets
    ]
    assert got == expected


def test_docx_table_rows_become_row_chunks() -> None:
    chunks, targets = _targets(FIXTURES / "tables.docx")
    stroke = [t for t in targets if "thrombolysis" in t.objective][0]
    assert stroke.area == "Stroke care" and stroke.values == ["20%"] and stroke.deadline == "March 2025"


def test_prose_keeps_heading_as_section_and_spans_point_into_the_page() -> None:
    path = ROOT / "corpus" / "nhs-business-plan-2023-24-breakdown.txt"
    (doc,) = load_file(path)
    chunks, _ = chunk_documents([doc], chunk_size=400, chunk_overlap=50)
    beds = [c for c in chunks if "5,000 hospital beds" in c.page_content][0]
    assert beds.metadata["section"] == "Improving Ambulance Response and A&E Waiting Times"
    for c in chunks:
        assert 0 <= c.metadata["start"] < c.metadata["end"] <= len(doc.page_content)
        body = doc.page_content[c.metadata["start"] : c.metadata["end"]]
        assert body in c.page_content
    assert all(len(c.page_content) <= 400 + 120 for c in chunks)


def test_chunk_ids_are_stable_across_runs() -> None:
    first, _ = _targets(OBJECTIVES)
    second, _ = _targets(OBJECTIVES)
    assert [c.metadata["chunk_id"] for c in first] == [c.metadata["chunk_id"] for c in second]
    assert len({c.metadata["chunk_id"] for c in first}) == len(first)


def test_values_and_deadlines_as_written() -> None:
    assert extract_values("the 70% 2-hour urgent community response (UCR) standard") == ["70%", "2-hour"]
    assert extract_values("an average of 30 minutes across 2023/24") == ["30 minutes"]
    assert extract_deadline("by 2028") == "2028"
    assert extract_deadline("in line with the March 2025 ambition of 95%") == "March 2025"
    assert extract_deadline("Improve access to perinatal mental health services") is None


BUSINESS_PLAN = ROOT / "corpus" / "nhs-business-plan-2023-24-breakdown.txt"
_LEAD = "The trust's estates plan sets out what it will do this year through the following priorities:"


def _priorities(text: str) -> list[tuple[str | None, str | None, list[str]]]:
    from langchain_core.documents import Document

    doc = Document(page_content=text, metadata={"source": "estates.txt", "page": 1, "title": "Estates"})
    _, targets = chunk_documents([doc])
    return [(t.area, t.theme, t.values) for t in targets if t.kind == "priority"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (  # a lead-in ending in ":" opens the list; each "Label: sentence" paragraph is a row
            f"{_LEAD}\n\nNew Theatres: Two new theatres will open at the county hospital, costing £12 million "
            "in all.\n\nGreener Buildings (NZE): Every ward will move to heat pumps before the end of the year.",
            [
                ("Estates Plan", "New Theatres", ["£12 million"]),
                ("Estates Plan", "Greener Buildings (NZE)", []),
            ],
        ),
        (  # no lead-in: a "Note: ..." paragraph is not a priority
            "The plan was agreed by the board in May.\n\nNote: Figures are provisional until the audit "
            "closes in the autumn.",
            [],
        ),
        (  # a label with a number names an item, not a priority; a short text is a caption
            f"{_LEAD}\n\nRecommendation 9: The board should review the theatre business case every "
            "quarter.\n\nOutcome: Fewer delays.",
            [],
        ),
        (  # the list ends at the first paragraph that is not a priority
            f"{_LEAD}\n\nNew Theatres: Two new theatres will open at the county hospital this year.\n\n"
            "Funding comes from the capital programme.\n\nCar Parks: The car parks will be resurfaced "
            "over the summer months by the estates team.",
            [("Estates Plan", "New Theatres", [])],
        ),
    ],
)
def test_priorities_are_label_paragraphs_of_an_introduced_list(
    body: str, expected: list[tuple[str, str, list[str]]]
) -> None:
    assert _priorities(f"Estates Plan\n\n{body}") == expected


def test_business_plan_priorities_join_the_register_with_their_figures() -> None:
    chunks, targets = _targets(BUSINESS_PLAN)
    priorities = [t for t in targets if t.kind == "priority"]
    assert len(priorities) == 31 and not [t for t in targets if t.kind != "priority"]
    capacity = priorities[0]
    assert (capacity.area, capacity.theme) == (
        "Improving Ambulance Response and A&E Waiting Times",
        "Increasing Capacity",
    )
    assert capacity.values == ["£1 billion", "5,000"]
    by_id = {c.metadata["chunk_id"]: c for c in chunks}
    assert all(t.objective in by_id[t.chunk_id].page_content for t in priorities)  # quotable from its chunk
