"""Answers from a real multi-page PDF report (eval/pdfs): tables, labelled passages, figures it lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.chain import Chain
from assistant.config import Settings
from assistant.store import build_index

ROOT = Path(__file__).resolve().parents[1]
REPORT = "Data Driven Healthcare in 2030 - Summary report - Mar 21.pdf"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    settings = Settings(index_dir=tmp_path_factory.mktemp("pdf") / "index")
    build_index([ROOT / "eval" / "pdfs"], settings)
    return Chain(settings)


@pytest.mark.slow
def test_a_table_row_is_quoted_whole_with_its_label(chain: Chain) -> None:
    answer = chain.ask("How is the clinical coding workforce projected to change between 2020 and 2030?")
    assert not answer.refused
    rows = [c for c in answer.citations if "3,560 3,101 -459 -13%" in c.quote]
    assert rows and "Clinical coding" in rows[0].quote and rows[0].page == 8
    assert "3,560 3,101 -459 -13%" in answer.text
    # the columns are quoted too, so the figures can be read
    assert any("Workforce size" in c.quote and "Projected" in c.quote for c in answer.citations)


@pytest.mark.slow
def test_a_labelled_passage_is_found_and_answers(chain: Chain) -> None:
    answer = chain.ask("What is Recommendation 1 of the Data Driven Healthcare in 2030 report?")
    assert not answer.refused
    assert answer.citations[0].page == 11 and answer.citations[0].source == REPORT
    assert "Recommendation 1:" in answer.citations[0].quote
    assert "occupational framework" in answer.text


@pytest.mark.slow
def test_a_count_the_report_does_not_give_is_refused(chain: Chain) -> None:
    # The report names cybersecurity specialists but never counts them.
    answer = chain.ask("How many cybersecurity specialists will the NHS need by 2030?")
    assert answer.refused and answer.citations == []


@pytest.mark.slow
def test_figures_come_from_the_text_not_the_contents_page(chain: Chain) -> None:
    answer = chain.ask(
        "How much does the NHS digital workforce need to grow by 2030 in the Data Driven Future?"
    )
    assert not answer.refused
    assert "69 per cent" in answer.text
    assert all(c.page != 5 for c in answer.citations)  # page 5 is the contents and list of figures
