"""What a new user meets, walked in a real chromium against a real `streamlit run app.py`.

First load -> ask -> open the cited PDF page (quote marked on the page image) -> Targets: search and open
a row's quote -> Evaluation: run, plots, failures only -> thumbs down with a correction -> Feedback: export
it as a QA candidate. Each step leaves a screenshot in docs/screens/ (the README shows them).
The corpus is corpus/ plus the two-page fixture PDF, so the walk needs nothing outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.streamlit_app import CHROMIUM_ARGS, chromium, served_app

ROOT = Path(__file__).resolve().parents[1]
SCREENS = ROOT / "docs" / "screens"
QUESTION = "How many MRI scanners will the Riverside community diagnostic centre open?"
CORRECTION = "12 new MRI scanners by October 2024, funded from the diagnostics capital programme."
WAIT_MS = 30_000  # the longest any one step may take (an evaluation run of three questions included)
MAX_SHOT_PX = 2400


def _qa_file(path: Path) -> Path:
    """Three questions: two the documents answer, and one expecting a figure no document states."""
    lines = (ROOT / "eval" / "qa" / "objectives.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    wrong = json.loads(lines[0]) | {"id": "wrong-on-purpose", "facts": ["99.9%"]}
    path.write_text("\n".join([*lines, json.dumps(wrong)]) + "\n", encoding="utf-8")
    return path


def _shoot(page: Any, name: str, expect: Callable[..., Any]) -> None:
    """The whole page once nothing is running. Streamlit scrolls its main block, not the document, so
    the window is made as tall as that block for the picture (at most MAX_SHOT_PX), then put back."""
    expect(page.get_by_test_id("stSpinner")).to_have_count(0, timeout=WAIT_MS)
    page.wait_for_timeout(400)  # fonts and images settle
    size = page.viewport_size
    height = page.get_by_test_id("stMainBlockContainer").evaluate("e => e.scrollHeight")
    page.set_viewport_size(
        {"width": size["width"], "height": min(max(height + 120, size["height"]), MAX_SHOT_PX)}
    )
    page.wait_for_timeout(300)
    page.screenshot(path=str(SCREENS / name))
    page.set_viewport_size(size)


def _go(page: Any, name: str) -> None:
    page.get_by_test_id("stSidebar").get_by_test_id("stRadio").get_by_text(name, exact=True).click()


@pytest.mark.e2e
def test_a_new_user_walks_every_page(index_env: Callable[[str], dict[str, str]], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    from assistant.config import Settings
    from assistant.evaluation import load_qa
    from assistant.store import build_index

    env = index_env("walk")
    corpus = Path(env["ASSISTANT_CORPUS_DIR"])
    shutil.copy(ROOT / "tests" / "fixtures" / "riverside-plan.pdf", corpus / "riverside-plan.pdf")
    build_index([corpus], Settings(index_dir=Path(env["ASSISTANT_INDEX_DIR"]), corpus_dir=corpus))
    SCREENS.mkdir(parents=True, exist_ok=True)
    served = served_app(
        os.environ | env | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}, tmp_path / "app.log"
    )
    with served as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
                page.set_default_timeout(WAIT_MS)

                # 1. First load: the chat, ready.
                page.goto(url)
                chat = page.get_by_test_id("stChatInputTextArea")
                chat.wait_for()
                expect(page.get_by_text("Ask the NHS planning documents")).to_be_visible()
                _shoot(page, "01-first-load.png", expect)

                # 2. Ask: a quoted answer citing the PDF's page 2.
                chat.fill(QUESTION)
                chat.press("Enter")
                answer = page.get_by_test_id("stChatMessage").nth(1)
                expect(answer).to_contain_text("12 new MRI scanners")
                sources = answer.get_by_test_id("stExpander")
                expect(sources).to_contain_text("riverside-plan.pdf")
                expect(sources).to_contain_text("page 2")
                _shoot(page, "02-answer.png", expect)

                # 3. Open the cited page: the page image, the quote's lines marked, and the PDF to download.
                sources.get_by_role("button", name="Open page 2").click()
                image = sources.get_by_test_id("stImage")
                expect(image).to_contain_text("page 2: the quote is marked")
                picture = image.locator("img")
                expect(picture).to_be_visible()
                assert (
                    picture.evaluate("i => i.complete && i.naturalWidth") > 800
                )  # a page drawn, not an icon
                expect(sources.get_by_role("button", name="Download riverside-plan.pdf")).to_be_visible()
                picture.scroll_into_view_if_needed()
                _shoot(page, "03-cited-page.png", expect)

                # 4. Targets: a search of this page's own, and a row's quote in its document.
                _go(page, "Targets")
                expect(page.get_by_text("Targets register")).to_be_visible()
                # The chat's document and area filters stay with the chat.
                expect(page.get_by_test_id("stSidebar").get_by_test_id("stMultiSelect")).to_have_count(0)
                search = page.get_by_role("textbox", name="Search")
                search.fill("hospital beds")
                search.press("Enter")
                expect(page.get_by_text("of 62 rows")).to_be_visible()
                page.get_by_role("button", name="Show its quote").click()
                mark = page.locator(".source-context mark")
                expect(mark).to_contain_text("5,000 hospital beds")
                _shoot(page, "04-targets.png", expect)

                # 5. Evaluation: a run with its plots, then only the failures.
                _go(page, "Evaluation")
                page.get_by_test_id("stRadio").get_by_text("Upload", exact=True).click()
                page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
                    str(_qa_file(tmp_path / "tiny.jsonl"))
                )
                expect(page.get_by_text("tiny.jsonl")).to_be_visible()
                page.get_by_role("button", name="Run evaluation").click()
                expect(page.get_by_text("3 questions, 1 answered wrongly")).to_be_visible()
                plots = page.get_by_test_id("stImage")
                expect(plots).to_have_count(3)
                expect(plots.nth(1)).to_contain_text("answer accuracy by tag, assistant and baseline")
                _shoot(page, "05-evaluation.png", expect)
                page.get_by_text("Failures only (1)").click()
                questions = page.get_by_test_id("stExpander").filter(has_text=" · ")
                expect(questions).to_have_count(1)
                expect(questions).to_contain_text("wrong-on-purpose")
                questions.first.locator("summary").click()
                expect(questions).to_contain_text("Rules that fired")
                questions.first.scroll_into_view_if_needed()
                _shoot(page, "06-failures-only.png", expect)

                # 6. Thumbs down on the answer, with what it should have said.
                _go(page, "Chat")
                answer = page.get_by_test_id("stChatMessage").nth(1)
                answer.locator("[data-testid^=stFeedbackButton]").nth(1).click()  # thumbs down
                correction = answer.get_by_label("What should the answer have said?", exact=False)
                correction.fill(CORRECTION)
                answer.get_by_role("button", name="Save correction").click()
                expect(answer).to_contain_text("Correction saved")
                _shoot(page, "07-thumbs-down.png", expect)

                # 7. Feedback: the rating listed, and the correction exported as a QA candidate.
                _go(page, "Feedback")
                expect(page.get_by_text("QA candidates (1)")).to_be_visible()
                with page.expect_download() as download:
                    page.get_by_role("button", name="Export QA candidates (.jsonl)").click()
                exported = tmp_path / "qa-candidates.jsonl"
                download.value.save_as(exported)
                _shoot(page, "08-feedback.png", expect)
            finally:
                browser.close()
    [candidate] = load_qa(exported)  # a valid QA line, as an evaluator's set would hold it
    assert (candidate.question, candidate.reference) == (QUESTION, CORRECTION)
    assert candidate.facts == ["12"]  # the figures of the correction
    assert candidate.sources == ["riverside-plan"] and candidate.tags == ["feedback"]
