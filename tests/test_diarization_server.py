"""Diarization through the server with the official ``openai`` client: response_format=diarized_json, known voices
as data URLs, and the one-line errors for bad known-speaker input."""

from __future__ import annotations

import base64
import io
import wave

import numpy as np
import pytest
from conftest import DATA, require_shared
from test_server_support import openai_client, running_servers

SR = 16000


def wav_bytes(samples: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def data_url(samples: np.ndarray) -> str:
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(samples)).decode("ascii")


@pytest.fixture(scope="module")
def server(tiny_en_default):
    yield from running_servers(tiny_en_default)


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server.url)


@pytest.fixture(scope="module")
def voices():
    require_shared()
    from tingxie.audio import decode_audio

    return {"jfk": decode_audio(str(DATA / "en" / "jfk.flac")), "mit": decode_audio(str(DATA / "en" / "mit_license_read.flac"))}


@pytest.fixture(scope="module")
def conversation(voices) -> bytes:
    pause = np.zeros(int(0.6 * SR), np.float32)
    return wav_bytes(np.concatenate([voices["jfk"], pause, voices["mit"][: 14 * SR], pause, voices["jfk"][: 6 * SR]]))


def test_diarized_json_through_the_openai_client(client, conversation):
    result = client.audio.transcriptions.create(model="tiny.en", file=("talk.wav", conversation), response_format="diarized_json")
    assert result.task == "transcribe" and result.text and result.duration > 30
    assert {s.speaker for s in result.segments} == {"A", "B"}
    assert all(s.type == "transcript.text.segment" and s.end >= s.start for s in result.segments)
    jfk = {s.speaker for s in result.segments if "country" in s.text}
    mit = {s.speaker for s in result.segments if "software" in s.text or "Permission" in s.text}
    assert jfk == {"A"} and mit == {"B"}


def test_known_speakers_name_the_voices(client, conversation, voices):
    result = client.audio.transcriptions.create(
        model="tiny.en", file=("talk.wav", conversation), response_format="diarized_json",
        known_speaker_names=["Ana", "Ben"], known_speaker_references=[data_url(voices["mit"][16 * SR : 26 * SR]), data_url(voices["jfk"][5 * SR :])],
    )
    by_name = {s.speaker for s in result.segments if "country" in s.text}, {s.speaker for s in result.segments if "software" in s.text}
    assert by_name == ({"Ben"}, {"Ana"})


@pytest.mark.parametrize("names, references, message", [
    (["Ana", "Ben"], ["data:audio/wav;base64,AAAA"], "must pair up"),
    (["Ana"], ["data:audio/wav;base64," + base64.b64encode(b"not audio at all").decode()], "is not audio"),
    (["Ana"], ["https://example.com/ana.wav"], "is not audio in a data URL"),
])
def test_bad_known_speakers_are_400(server, conversation, names, references, message):
    import httpx

    response = httpx.post(f"{server.url}/v1/audio/transcriptions", files={"file": ("talk.wav", conversation)}, timeout=120,
                          data={"response_format": "diarized_json", "known_speaker_names[]": names, "known_speaker_references[]": references})
    assert response.status_code == 400
    error = response.json()["error"]
    assert message in error["message"] and error["param"] == "known_speaker_references"


def test_diarized_json_is_not_for_translations(server, conversation):
    import httpx

    response = httpx.post(f"{server.url}/v1/audio/translations", files={"file": ("talk.wav", conversation)},
                          data={"response_format": "diarized_json"}, timeout=60)
    assert response.status_code == 400 and "transcriptions" in response.json()["error"]["message"]
