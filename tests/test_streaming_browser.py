"""The live-captions page in headless Chromium (Debian's, driven by Playwright) with Chromium's fake microphone
playing a shared WAV: the words must appear as final (black) text. A screenshot goes to artifacts/live_page.png."""

from __future__ import annotations

import pytest
from browser_support import launched_chromium
from conftest import REPO, audio_path
from test_server_support import running_servers

ARTIFACTS = REPO / "artifacts"
SPOKEN_WAV = "word_list"  # en/word_list.wav: seven words with pauses between them


@pytest.fixture(scope="module")
def server(tiny_en):
    yield from running_servers(tiny_en)


@pytest.fixture(scope="module")
def browser():
    wav = audio_path(SPOKEN_WAV)
    fake_microphone = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", f"--use-file-for-fake-audio-capture={wav}"]
    yield from launched_chromium(fake_microphone)


def test_live_captions_from_the_fake_microphone(browser, server):
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/live")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    assert page.locator("#model").input_value() == "tiny.en"
    page.click("#start")
    page.wait_for_function("document.querySelector('#status').textContent === 'Listening'", timeout=30_000)
    # wait for words from the middle and the end of the file to become final (the fake device loops the file)
    page.wait_for_function(
        "(() => { const t = document.querySelector('#finals').textContent.toLowerCase();"
        " return t.includes('president') && t.includes('devastated'); })()",
        timeout=150_000,
    )
    finals = page.locator("#finals .final")
    assert finals.count() >= 2
    assert finals.first.evaluate("e => getComputedStyle(e).color") == "rgb(0, 0, 0)"  # final text is black
    assert page.locator("#partial").evaluate("e => getComputedStyle(e).color") == "rgb(138, 147, 159)"  # partial grey
    spoken = page.locator("#finals").inner_text().lower()
    # each word is its own utterance (a pause finalises it); alone, tiny.en hears "Kentucky" as "Can tucky"
    assert sum(word in spoken for word in ("settlement", "causing", "damage", "president", "expansion", "hospital", "devastated")) >= 6
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "live_page.png"))
    page.click("#stop")
    page.wait_for_function("document.querySelector('#status').textContent === 'Done'", timeout=60_000)
    assert page.locator("#start").is_enabled()
    assert not errors, errors
    page.close()


FAKE_SOCKET = """
window.WebSocket = class {
  static OPEN = 1;
  constructor(url) {
    this.url = url; this.readyState = 1; this.sent = 0; window.__socket = this;
    setTimeout(() => this.onopen && this.onopen(), 0);
  }
  send() { this.sent += 1; }
  close() {}
  emit(message) { this.onmessage({ data: JSON.stringify(message) }); }
};
"""


def test_the_page_shows_how_far_behind_the_server_is_until_it_catches_up(browser, server):
    """The server's lag events (replayed here by a stand-in WebSocket) show as 'Behind by N s', and go once it has caught up."""
    page = browser.new_page()
    page.add_init_script(FAKE_SOCKET)
    page.goto(server.url + "/live")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    page.select_option("#policy", "local-agreement")
    page.click("#start")
    page.wait_for_function("window.__socket && document.querySelector('#status').textContent === 'Listening'", timeout=30_000)
    assert "policy=local-agreement" in page.evaluate("window.__socket.url")
    assert page.locator("#lag").is_hidden()
    page.evaluate("window.__socket.emit({type: 'lag', backlog_s: 3.24, level: 1})")
    assert page.locator("#lag").is_visible()
    assert page.locator("#lag").inner_text() == "Behind by 3.2 s — catching up with faster, less accurate decoding"
    page.evaluate("window.__socket.emit({type: 'final', text: 'hello', start: 0.1, end: 0.5, words: []})")
    page.evaluate("window.__socket.emit({type: 'lag', backlog_s: 0, level: 1})")
    assert page.locator("#lag").is_hidden()
    assert page.locator("#finals").inner_text().strip() == "hello"
    page.close()
