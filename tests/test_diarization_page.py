"""The web page's speakers in headless Chromium: a two-voice upload with "Who said what" shows each line's speaker in
its colour, a speaker renamed on the page is renamed in the transcript and in the downloaded txt."""

from __future__ import annotations

import wave

import numpy as np
import pytest
from browser_support import launched_chromium
from conftest import DATA, require_shared
from test_server_support import running_servers

SR = 16000


@pytest.fixture(scope="module")
def browser():
    yield from launched_chromium()


@pytest.fixture(scope="module")
def server(tiny_en_default):
    yield from running_servers(tiny_en_default)


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    require_shared()
    from tingxie.audio import decode_audio

    jfk, mit = decode_audio(str(DATA / "en" / "jfk.flac")), decode_audio(str(DATA / "en" / "mit_license_read.flac"))
    samples = np.concatenate([jfk, np.zeros(SR // 2, np.float32), mit[: 14 * SR]])
    path = tmp_path_factory.mktemp("page") / "talk.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def test_speakers_in_colour_renamed_before_download(browser, server, talk):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    page.set_input_files("#file", str(talk))
    page.check("#speakers")
    page.click("#submit")
    page.wait_for_selector("#download-txt[href]", timeout=180_000)

    chips = page.locator("#transcript .speaker")
    assert set(chips.all_inner_texts()) == {"A", "B"}
    colours = {chips.nth(i).evaluate("c => getComputedStyle(c).color") for i in range(chips.count())}
    assert len(colours) == 2
    line_a = page.locator("#transcript li", has=page.locator(".speaker", has_text="A")).first.inner_text()
    assert "country" in line_a.lower()

    page.fill("#speaker-names input[data-speaker='A']", "Jack")
    assert "Jack" in chips.all_inner_texts() and "A" not in chips.all_inner_texts()
    with page.expect_download() as download_info:
        page.click("#download-txt")
    text = open(download_info.value.path(), encoding="utf-8").read()
    assert text.startswith("Jack: ") and "\nB: " in text
    assert errors == []
