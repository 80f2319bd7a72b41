"""The /practice page in headless Chromium (Debian's, driven by Playwright) against a real server with tiny.en:
the JFK sentence with three words swapped and jfk.flac give exactly those three words marked replaced (with what
was heard), a click on a word seeks the player to its start, and a bad upload shows the server's message.
A screenshot goes to artifacts/practice_page.png."""

from __future__ import annotations

import httpx
import pytest
from browser_support import launched_chromium
from conftest import REPO
from test_practice import SWAPS, _swapped, _true_text
from test_server_support import clip, running_servers

ARTIFACTS = REPO / "artifacts"


@pytest.fixture(scope="module")
def browser():
    yield from launched_chromium()


@pytest.fixture(scope="module")
def server(tiny_en):
    yield from running_servers(tiny_en)


def _open(browser, server):
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server.url + "/practice")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0 && document.querySelectorAll('#language option').length > 1")
    return page, errors


def test_three_swapped_words_are_marked_and_playable(browser, server):
    page, errors = _open(browser, server)
    assert page.locator("#nav a[aria-current=page]").inner_text() == "Practice"
    assert page.locator("#model").input_value() == "tiny.en"
    text = _swapped(_true_text())
    assert text.startswith("And so, my yellow Americans, task not what your county")
    page.fill("#text", text)
    page.set_input_files("#file", str(clip("jfk")))
    assert "jfk.flac" in page.locator("#file-name").inner_text()
    page.click("#check")
    page.wait_for_selector("#result:not(.hidden)", timeout=120_000)

    words = page.eval_on_selector_all("#sentence .w", "els => els.map(e => [e.dataset.word, e.dataset.verdict, e.innerText, e.title])")
    assert len(words) == 22 and words[0][0] == "And"
    marked = {word: verdict for word, verdict, _, _ in words if verdict != "ok"}
    assert marked == {"yellow": "replaced", "task": "replaced", "county": "replaced"}, words
    heard = {word: shown for word, verdict, shown, _ in words if verdict == "replaced"}
    for said, meant in SWAPS.items():
        assert f"heard “{said}”" in heard[meant], heard
    assert all("p=" in title and " s" in title for *_, title in words)
    assert 80 < float(page.locator("#score").inner_text()) < 90  # 19 of 22 words
    assert page.locator("#repeat").inner_text() == "yellow, task, county"
    assert "ask not what your country" in page.locator("#heard").inner_text().lower()
    assert page.locator("#status").inner_text().startswith("Done")

    # a click on a word seeks the player to that word's start (the last word, "country.", near the end)
    page.wait_for_function("document.querySelector('#player').readyState >= 1")
    last = page.locator("#sentence .w").last
    start = float(last.get_attribute("data-start"))
    assert start > 9.0
    last.click()
    page.evaluate("document.querySelector('#player').pause()")
    seeked = page.evaluate("document.querySelector('#player').currentTime")
    assert abs(seeked - start) < 0.5, (seeked, start)
    assert "playing" in (last.get_attribute("class") or "")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "practice_page.png"), full_page=True)
    assert errors == []
    page.close()


def test_bad_upload_shows_the_servers_message(browser, server, tmp_path):
    page, errors = _open(browser, server)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a recording\n" * 50)
    page.fill("#text", "Hello there.")
    page.set_input_files("#file", str(notes))
    page.click("#check")
    page.wait_for_selector("#error:not(.hidden)", timeout=60_000)
    message = page.locator("#error").inner_text()
    assert message.startswith("Error 400:") and "notes.txt" in message, message
    assert page.locator("#result").is_hidden()
    page.close()
    # the browser logs the failed request itself; no script error
    assert [e for e in errors if "status of 400" not in e] == []


def test_the_page_is_served_but_not_in_the_api_schema(server):
    page = httpx.get(server.url + "/practice", timeout=10)
    assert page.status_code == 200 and 'src="/static/practice.js"' in page.text
    assert "/practice" not in httpx.get(server.url + "/openapi.json", timeout=10).json()["paths"]
    assert httpx.get(server.url + "/static/practice.js", timeout=10).status_code == 200
