"""End to end: a real `streamlit run app.py` server over a real index, driven by Debian's chromium."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.streamlit_app import CHROMIUM_ARGS, free_port, start_app, stop_app, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "screenshot.png"
SESSIONS = [
    ("What is the A&E 4-hour target?", "76%"),
    ("What's the ARRS recruitment target?", "26,000"),
    ("What dementia diagnosis rate should we recover to?", "66.7%"),
    ("What's the UCR standard?", "70%"),
    ("What dose of amoxicillin for a 5-year-old?", "clinical advice"),
]


def _wait_for_line(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(encoding="utf-8", errors="replace"):
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} not in the server log: {path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)


def _five_sessions_at_once(browser: object, url: str, expect: Callable[..., object]) -> None:
    """Five browser sessions ask at the same time; each gets its own right answer, no error."""
    pages = [browser.new_context().new_page() for _ in SESSIONS]  # type: ignore[attr-defined]
    for page in pages:
        page.goto(url)
    for page, (question, _) in zip(pages, SESSIONS, strict=True):
        chat = page.get_by_test_id("stChatInputTextArea")
        chat.wait_for(timeout=120_000)
        chat.fill(question)
    for page in pages:  # submit all before waiting on any
        page.get_by_test_id("stChatInputTextArea").press("Enter")
    for page, (_, figure) in zip(pages, SESSIONS, strict=True):
        expect(page.get_by_test_id("stChatMessage").nth(1)).to_contain_text(figure, timeout=60_000)
        expect(page.get_by_test_id("stException")).to_have_count(0)


@pytest.mark.e2e
def test_browser_asks_and_sees_a_cited_answer(
    index_env: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed; run `make browser`")
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = os.environ | index_env("e2e") | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log_path = tmp_path / "streamlit.log"
    log = log_path.open("wb")
    server = start_app(port, env, log)
    try:
        wait_healthy(url, server, timeout=90)
        # The model and index load when the server starts, before anyone opens the page.
        _wait_for_line(log_path, "Warm: index of", timeout=90)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(url)
                chat = page.get_by_test_id("stChatInputTextArea")
                chat.wait_for(timeout=120_000)  # the index and model load behind a spinner first
                chat.fill("what is the A&E 4-hour target?")
                chat.press("Enter")
                answer = page.get_by_test_id("stChatMessage").nth(1)
                expect(answer).to_contain_text("76%", timeout=60_000)
                sources = answer.get_by_test_id("stExpander")
                expect(sources).to_contain_text("nhs-national-objectives-2023-24")
                mark = sources.locator("mark")
                expect(mark).to_contain_text("no less than 76% of patients are seen within 4 hours")
                # Let the page settle (spinner gone, fonts in) before the picture for the docs.
                expect(page.get_by_test_id("stSpinner")).to_have_count(0, timeout=30_000)
                page.wait_for_timeout(500)
                SCREENSHOT.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
                _five_sessions_at_once(browser, url, expect)
            finally:
                browser.close()
    finally:
        stop_app(server, log)
    assert SCREENSHOT.stat().st_size > 10_000


@pytest.mark.e2e
def test_no_request_leaves_the_page_for_links_and_images_in_a_document(
    index_env: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    # issue 12 finding 5: `![x](http://host/p)` in a document made every viewer's browser fetch the URL
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed; run `make browser`")
    from playwright.sync_api import expect, sync_playwright

    from assistant.config import Settings
    from assistant.store import build_index

    env = index_env("e2e-links")
    corpus = Path(env["ASSISTANT_CORPUS_DIR"])
    shutil.copy(ROOT / "tests" / "fixtures" / "image-link.md", corpus / "image-link.md")
    settings = Settings(index_dir=Path(env["ASSISTANT_INDEX_DIR"]), corpus_dir=corpus)
    build_index([corpus], settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "streamlit.log").open("wb")
    server = start_app(port, os.environ | env | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}, log)
    requested: list[str] = []
    try:
        wait_healthy(url, server, timeout=90)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.on("request", lambda request: requested.append(request.url))
                page.goto(url)
                chat = page.get_by_test_id("stChatInputTextArea")
                chat.wait_for(timeout=120_000)
                for n, question in enumerate(
                    [
                        "How many community beds will the Riverside ward open?",  # answered: quote and title
                        "What is the Riverside budget for helicopters?",  # refused: closest topics
                    ]
                ):
                    chat.fill(question)
                    chat.press("Enter")
                    reply = page.get_by_test_id("stChatMessage").nth(2 * n + 1)
                    expect(reply).to_contain_text("![", timeout=60_000)  # shown as the characters it is
                    expect(reply).to_contain_text("://example.invalid/")
                    expect(reply.locator("img")).to_have_count(0)
                    expect(reply.locator("a[href*='example.invalid']")).to_have_count(0)
                page.get_by_test_id("stExpander").first.click()  # the source text, opened as well
                page.wait_for_timeout(1000)
                expect(page.locator("img[src*='example.invalid']")).to_have_count(0)
            finally:
                browser.close()
    finally:
        stop_app(server, log)
    away = [r for r in requested if not r.startswith((url, "data:"))]
    assert requested and not away, away
