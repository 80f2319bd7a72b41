"""The web page in headless Chromium (Debian's, driven by Playwright): upload speech, read the transcript,
seek by timestamp, download the SRT. A screenshot goes to artifacts/server_page.png."""

from __future__ import annotations

import pytest
from browser_support import launched_chromium
from conftest import REPO
from test_server_support import clip, running_servers

ARTIFACTS = REPO / "artifacts"


@pytest.fixture(scope="module")
def browser():
    yield from launched_chromium()


@pytest.fixture(scope="module")
def server(tiny_en):
    yield from running_servers(tiny_en)


def test_upload_transcribe_seek_and_download(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    assert page.locator("#model").input_value() == "tiny.en"
    assert page.locator("#nav a[aria-current=page]").inner_text() == "Transcribe"  # the bar that links the pages

    page.set_input_files("#file", str(clip("jfk")))
    assert "jfk.flac" in page.locator("#file-name").inner_text()
    page.click("#submit")
    page.wait_for_selector("#download-srt[href]", timeout=120_000)

    transcript = page.locator("#transcript").inner_text()
    assert "ask not what your country can do for you" in transcript.lower()
    assert page.locator("#status").inner_text().startswith("Done")
    assert "english" in page.locator("#meta").inner_text().lower()

    # a timestamp seeks the player to its segment
    stamps = page.locator("#transcript .ts")
    assert stamps.count() >= 1
    last = stamps.nth(stamps.count() - 1)
    start = float(last.evaluate("b => b.parentElement.dataset.start"))
    page.wait_for_function("document.querySelector('#player').readyState >= 1")
    page.evaluate(f"document.querySelector('#player').currentTime = {start + 3.0}")  # somewhere else first
    last.click()
    page.evaluate("document.querySelector('#player').pause()")
    seeked = page.evaluate("document.querySelector('#player').currentTime")
    assert abs(seeked - start) < 0.5, (seeked, start)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "server_page.png"), full_page=True)

    with page.expect_download() as download_info:
        page.click("#download-srt")
    download = download_info.value
    assert download.suggested_filename == "jfk.srt"
    saved = tmp_path / "jfk.srt"
    download.save_as(saved)
    srt = saved.read_text(encoding="utf-8")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:")
    assert "ask not what your country can do for you" in srt.lower()
    assert errors == []
    page.close()


def test_bad_file_shows_the_servers_message(browser, server, tmp_path):
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a recording\n" * 50)
    page.set_input_files("#file", str(notes))
    page.click("#submit")
    page.wait_for_selector("#error:not(.hidden)", timeout=60_000)
    message = page.locator("#error").inner_text()
    assert "400" in message and "notes.txt" in message
    page.close()
