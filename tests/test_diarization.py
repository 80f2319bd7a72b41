"""Speaker diarization on real speech with the real weights: tiny.en as users load it, the GE2E encoder from the
Resemblyzer package, two distinct voices from ../shared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, require_shared

SR = 16000


def write_wav(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def tingxie(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tingxie", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.fixture(scope="module")
def voices() -> dict[str, np.ndarray]:
    require_shared()
    from tingxie.audio import decode_audio

    return {"jfk": decode_audio(str(DATA / "en" / "jfk.flac")), "mit": decode_audio(str(DATA / "en" / "mit_license_read.flac"))}


@pytest.fixture(scope="module")
def conversation(voices) -> np.ndarray:
    """JFK (11 s), the MIT-license reader (first 14 s), JFK's first 6 s again, with 0.6-s pauses."""
    pause = np.zeros(int(0.6 * SR), np.float32)
    return np.concatenate([voices["jfk"], pause, voices["mit"][: 14 * SR], pause, voices["jfk"][: 6 * SR]])


@pytest.fixture(scope="module")
def diarized(tiny_en_default, conversation):
    return tiny_en_default.transcribe(conversation, diarize=True)


def speakers_of(result, *words: str) -> set[str]:
    """The speakers of the transcribed words that match these (lower case, without punctuation)."""
    wanted = set(words)
    return {w.speaker for w in result.words if w.word.strip(" .,").lower() in wanted}


def test_two_voices_get_two_labels_and_the_right_words(diarized):
    assert {s.speaker for s in diarized.segments} == {"SPEAKER_00", "SPEAKER_01"}
    assert all(w.speaker is not None for w in diarized.words)
    jfk, mit = speakers_of(diarized, "americans", "country"), speakers_of(diarized, "permission", "software", "granted")
    assert jfk == {"SPEAKER_00"} and mit == {"SPEAKER_01"}  # numbered in order of first words
    # segments never mix voices, and the JFK words at the end are labelled as his first ones
    for segment in diarized.segments:
        assert {w.speaker for w in segment.words} == {segment.speaker}
    assert diarized.segments[-1].speaker == "SPEAKER_00" and diarized.segments[-1].start > 25


def test_the_json_carries_speakers_on_segments_and_words(diarized):
    d = diarized.to_dict()
    assert all("speaker" in s and all("speaker" in w for w in s["words"]) for s in d["segments"])
    assert [s["id"] for s in d["segments"]] == list(range(len(d["segments"])))


def test_a_known_count_and_known_voices(tiny_en_default, conversation, voices, tmp_path):
    one = tiny_en_default.transcribe(conversation, diarize=True, num_speakers=1)
    assert {s.speaker for s in one.segments} == {"SPEAKER_00"}
    ana = write_wav(tmp_path / "ana.wav", voices["mit"][16 * SR : 26 * SR])  # other sentences than those in the conversation
    ben = write_wav(tmp_path / "ben.wav", voices["jfk"][5 * SR :])
    named = tiny_en_default.transcribe(conversation, diarize=True, speaker_names="Ana,Ben", speaker_references=f"{ana},{ben}")
    assert speakers_of(named, "americans", "country") == {"Ben"} and speakers_of(named, "permission", "software") == {"Ana"}


def test_one_voice_gets_one_label(tiny_en_default, voices):
    result = tiny_en_default.transcribe(voices["mit"], diarize=True)
    assert result.text.strip() and {s.speaker for s in result.segments} == {"SPEAKER_00"}


def test_silence_has_no_speakers(tiny_en_default):
    require_shared()
    result = tiny_en_default.transcribe(str(DATA / "misc" / "silence.wav"), diarize=True)
    assert result.segments == [] and result.text == ""


def test_the_pipeline_alone_finds_the_turns(conversation):
    from tingxie.diarization import diarize_samples

    diarization = diarize_samples(conversation)
    assert diarization.speakers == ("SPEAKER_00", "SPEAKER_01")
    # the MIT reader speaks from 11.6 to 25.6 s: the turns there are hers
    mid = [t.speaker for t in diarization.turns if 12.5 < (t.start + t.end) / 2 < 25]
    assert mid and set(mid) == {"SPEAKER_01"}


def test_cli_writes_speakers_in_every_format(conversation, tmp_path):
    audio = write_wav(tmp_path / "talk.wav", conversation)
    run = tingxie("transcribe", str(audio), "--diarize", "True", "--output_format", "all", "--output_dir", str(tmp_path), "--verbose", "False",
                  "--progress", "False", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    txt = (tmp_path / "talk.txt").read_text().splitlines()
    assert txt[0].startswith("SPEAKER_00: ") and any(line.startswith("SPEAKER_01: ") for line in txt)
    vtt = (tmp_path / "talk.vtt").read_text()
    assert "<v SPEAKER_00>" in vtt and "<v SPEAKER_01>" in vtt
    assert "[SPEAKER_01] " in (tmp_path / "talk.srt").read_text()
    tsv = (tmp_path / "talk.tsv").read_text().splitlines()
    assert tsv[0] == "start\tend\tspeaker\ttext" and tsv[1].split("\t")[2] == "SPEAKER_00"
    data = json.loads((tmp_path / "talk.json").read_text())
    assert {s["speaker"] for s in data["segments"]} == {"SPEAKER_00", "SPEAKER_01"}


@pytest.mark.parametrize("args, message", [
    (["--num_speakers", "0"], "num_speakers must be a whole number >= 1, got 0"),
    (["--min_speakers", "3", "--max_speakers", "2"], "min_speakers (3) is more than max_speakers (2)"),
    (["--speaker_names", "Ana,Ben", "--speaker_references", "{ref}"], "speaker_names and speaker_references must pair up"),
    (["--speaker_names", "Ana", "--speaker_references", "{ref}"], "speaker reference '{ref}' is not usable audio"),
])
def test_cli_bad_speaker_options_get_one_line(tmp_path, args, message):
    require_shared()
    ref = tmp_path / "ana.txt"
    ref.write_text("this is not audio\n")
    args = [a.replace("{ref}", str(ref)) for a in args]
    run = tingxie("transcribe", str(DATA / "en" / "jfk.flac"), "--diarize", "True", *args, "--output_dir", str(tmp_path), cwd=tmp_path)
    assert run.returncode == 2
    assert message.replace("{ref}", str(ref)) in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_cli_speaker_options_need_diarize(tmp_path):
    require_shared()
    run = tingxie("transcribe", str(DATA / "en" / "jfk.flac"), "--num_speakers", "2", "--output_dir", str(tmp_path), cwd=tmp_path)
    assert run.returncode == 2 and "only apply with diarize=True" in run.stderr and "Traceback" not in run.stderr


def test_cli_silence_is_the_usual_empty_output(tmp_path):
    require_shared()
    run = tingxie("transcribe", str(DATA / "misc" / "silence.wav"), "--diarize", "True", "--output_format", "txt", "--output_dir", str(tmp_path), cwd=tmp_path)
    assert run.returncode == 1 and "no speech detected" in run.stderr and "Traceback" not in run.stderr
    assert (tmp_path / "silence.txt").read_text() == ""


def test_missing_speaker_weights_name_the_install(monkeypatch):
    import importlib.util

    from tingxie.diarization import encoder

    real = importlib.util.find_spec
    monkeypatch.setattr(encoder.importlib.util, "find_spec", lambda name, *a: None if name == "resemblyzer" else real(name, *a))
    with pytest.raises(encoder.SpeakerModelUnavailableError, match=r"pip install --no-deps Resemblyzer==0\.1\.4"):
        encoder.weights_path()


def test_the_weights_file_is_read_without_torch_and_refuses_other_objects(tmp_path):
    import pickle

    from tingxie.diarization.checkpoint import LEGACY_MAGIC, load_legacy_torch
    from tingxie.diarization.encoder import load_state, weights_path
    from tingxie.errors import CheckpointError

    state = load_state(weights_path())
    assert state["lstm.weight_ih_l0"].shape == (1024, 40) and state["linear.weight"].shape == (256, 256)
    bad = tmp_path / "bad.pt"
    with bad.open("wb") as f:
        for part in (LEGACY_MAGIC, 1001, {}):
            pickle.dump(part, f)
        f.write(b"cos\nsystem\n(S'echo no'\ntR.")  # a pickle that would call os.system
    with pytest.raises(CheckpointError, match="not allowed"):
        load_legacy_torch(bad)


def test_clustering_keeps_a_count_that_was_asked_for():
    from tingxie.diarization.clustering import cluster_embeddings

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 256))
    points = np.concatenate([c + 0.05 * rng.normal(size=(10, 256)) for c in centres])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    assert len(set(cluster_embeddings(points).tolist())) == 3
    assert len(set(cluster_embeddings(points, num_speakers=2).tolist())) == 2
    assert len(set(cluster_embeddings(points, max_speakers=2).tolist())) == 2
    assert cluster_embeddings(points[:1]).tolist() == [0] and cluster_embeddings(points[:0]).tolist() == []


def test_batch_passes_diarize_through(conversation, tmp_path):
    folder = tmp_path / "calls"
    folder.mkdir()
    write_wav(folder / "talk.wav", conversation)
    run = tingxie("batch", str(folder), "--diarize", "True", "--output_dir", str(tmp_path / "out"), "--output_format", "json", "--workers", "1",
                  "--progress", "False", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    data = json.loads((tmp_path / "out" / "talk.json").read_text())
    assert {s["speaker"] for s in data["segments"]} == {"SPEAKER_00", "SPEAKER_01"}
    assert all("speaker" in w for s in data["segments"] for w in s["words"])


def test_missing_diarize_packages_name_the_extra(monkeypatch):
    import importlib.util

    from tingxie.diarization import encoder

    real = importlib.util.find_spec
    monkeypatch.setattr(encoder.importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else real(name, *a))
    with pytest.raises(encoder.SpeakerModelUnavailableError, match=r"needs scipy: pip install 'tingxie-asr\[diarize\]'"):
        encoder.check_packages()


def _two_close_voices(rng, distance: float = 0.2, n: int = 10) -> np.ndarray:
    """n windows of each of two voices whose centres lie ``distance`` apart in cosine (closer than the threshold)."""
    a = rng.normal(size=256)
    a /= np.linalg.norm(a)
    other = rng.normal(size=256)
    other -= (other @ a) * a
    b = (1 - distance) * a + np.sqrt(1 - (1 - distance) ** 2) * other / np.linalg.norm(other)
    points = np.concatenate([c + 0.01 * rng.normal(size=(n, 256)) for c in (a, b)])
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def test_clustering_splits_close_voices_that_never_share_a_stretch_of_speech():
    from tingxie.diarization.clustering import cluster_embeddings

    points = _two_close_voices(np.random.default_rng(1))
    assert len(set(cluster_embeddings(points).tolist())) == 1  # the threshold alone merges them
    turns = np.repeat([0, 1, 2, 3], 5)  # voice a speaks in regions 0-1, voice b in 2-3
    labels = cluster_embeddings(points, regions=turns)
    assert len(set(labels.tolist())) == 2 and len(set(labels[:10].tolist())) == 1 and len(set(labels[10:].tolist())) == 1
    assert len(set(cluster_embeddings(points, regions=turns, max_speakers=1).tolist())) == 1
    # the same windows taking turns inside each region: one voice's spread, not two voices
    order = np.ravel(np.column_stack([np.arange(10), np.arange(10, 20)]))
    assert len(set(cluster_embeddings(points[order], regions=np.repeat([0, 1], 10)).tolist())) == 1


def test_clustering_keeps_a_voice_that_spoke_little_when_it_is_far_from_the_rest():
    from tingxie.diarization.clustering import cluster_embeddings

    rng = np.random.default_rng(2)
    centres = rng.normal(size=(3, 256))
    sizes = (12, 12, 3)
    points = np.concatenate([c + 0.05 * rng.normal(size=(n, 256)) for c, n in zip(centres, sizes)])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    assert len(set(cluster_embeddings(points).tolist())) == 3
    assert len(set(cluster_embeddings(points[:25]).tolist())) == 2  # one window far from the rest is not a voice


def test_a_small_group_looked_at_closely_stays_a_voice_when_its_closer_look_is_far():
    from tingxie.diarization.clustering import FAR_DISTANCE, cluster_embeddings

    rng = np.random.default_rng(3)
    points = _two_close_voices(rng, distance=FAR_DISTANCE - 0.05, n=12)[:15]  # 12 windows of one voice, 3 of a near one
    split = FAR_DISTANCE - 0.04  # a cut that leaves the 3 apart, a small group
    assert len(set(cluster_embeddings(points, threshold=split).tolist())) == 1  # their mean is within FAR_DISTANCE: they join
    far = rng.normal(size=256)  # what a closer look at their speech finds: a voice far from the 12
    looked = []
    labels = cluster_embeddings(points, threshold=split, closer_look=lambda idx: looked.append(idx.tolist()) or far / np.linalg.norm(far))
    assert looked == [[12, 13, 14]]
    assert len(set(labels[:12].tolist())) == 1 and set(labels[12:].tolist()) == {1 - labels[0]}
    # three fragments of speech each shorter than a window are too little to tell a voice by: they still join
    short = np.arange(15) >= 12
    assert len(set(cluster_embeddings(points, threshold=split, closer_look=lambda idx: far / np.linalg.norm(far), full=~short).tolist())) == 1


def test_group_spans_join_the_windows_that_overlap_within_a_region():
    from tingxie.diarization.windows import EmbeddingWindow, group_spans

    windows = [EmbeddingWindow(0, 0, 100), EmbeddingWindow(0, 80, 180), EmbeddingWindow(0, 300, 400), EmbeddingWindow(1, 390, 500)]
    assert group_spans(windows, np.array([0, 1, 2, 3])) == [(0, 180), (300, 400), (390, 500)]
    assert group_spans(windows, np.array([1])) == [(80, 180)]


def test_speech_regions_at_8_khz_agree_with_the_vad():
    require_shared()
    from tingxie.audio import decode_audio
    from tingxie.diarization.speech import speech_regions
    from tingxie.vad import VadOptions, speech_timestamps

    samples = decode_audio(str(DATA / "en" / "real_concat.flac"))
    masks = []
    for regions in (speech_regions(samples), speech_timestamps(samples, VadOptions(min_silence_ms=300))):
        mask = np.zeros(len(samples), bool)
        for s, e in regions:
            mask[s:e] = True
        masks.append(mask)
    assert masks[0].sum() > 45 * SR and np.mean(masks[0] != masks[1]) < 0.03
    assert speech_regions(np.zeros(SR, np.float32)) == [] and speech_regions(np.zeros(0, np.float32)) == []


def test_turn_changes_move_to_pauses_between_words_and_stay_where_no_words_are():
    from tingxie.diarization.resegment import _turns_at_words
    from tingxie.diarization.timeline import SpeakerTurn
    from tingxie.results import Word

    turns = [SpeakerTurn(0.0, 5.0, "A"), SpeakerTurn(5.0, 10.0, "B"), SpeakerTurn(10.0, 20.0, "C")]
    words = [Word(" one", 1.0, 4.4, 1.0, speaker="A"), Word(" two", 4.8, 6.0, 1.0, speaker="B"), Word(" three", 6.2, 7.0, 1.0, speaker="B")]
    out = _turns_at_words(turns, words, ((0, 20 * SR),))
    # A->B moves to the pause between "one" and "two"; B->C has no words near it (speech the model did not write)
    assert out == [SpeakerTurn(0.0, 4.6, "A"), SpeakerTurn(4.6, 10.0, "B"), SpeakerTurn(10.0, 20.0, "C")]


def test_diarizing_keeps_the_text_of_the_same_transcription_without_it(tiny_en_default, conversation, diarized):
    # the words are timed for the speakers, but their ends do not move the next window's start (word_timestamps' rule)
    plain = tiny_en_default.transcribe(conversation)
    assert " ".join(s.text for s in diarized.segments).split() == plain.text.split()
    assert all(w.speaker for s in diarized.segments for w in s.words)


def test_diarizing_keeps_the_text_on_the_torch_engine_and_in_vad_batched_mode(tiny_en_default, tiny_en_torch, conversation):
    from tingxie.batched import transcribe_batched
    from tingxie.diarization import start_speakers
    from tingxie.options import build_options

    options = build_options(diarize=True)

    def batched_diarized():  # as the CLI's --diarize True --batch_size 4 does
        with start_speakers(conversation, options) as speakers:
            return speakers.apply(tiny_en_default, transcribe_batched(tiny_en_default, conversation, options, batch_size=4))

    runs = {
        "torch": (tiny_en_torch.transcribe(conversation), tiny_en_torch.transcribe(conversation, diarize=True)),
        "vad-batched": (transcribe_batched(tiny_en_default, conversation, batch_size=4), batched_diarized()),
    }
    for name, (plain, diarized) in runs.items():
        assert " ".join(s.text for s in diarized.segments).split() == plain.text.split(), name
        assert diarized.words and all(w.speaker for w in diarized.words), name


def test_speaker_turns_found_beside_the_transcription_match_those_found_after(tiny_en_default, conversation, diarized):
    from tingxie.diarization import diarize_samples, start_speakers
    from tingxie.diarization.pipeline import Stopped
    from tingxie.options import build_options

    options = build_options(diarize=True)
    with start_speakers(conversation, options) as speakers:
        assert speakers.diarization() == diarize_samples(conversation)
    info, segments = tiny_en_default.iter_transcribe(conversation, diarize=True)  # the words timed, no speakers yet
    assert diarized.segments == start_speakers(conversation, options).apply(tiny_en_default, tiny_en_default.assemble(info, list(segments))).segments
    # a transcription that fails stops the speaker work between batches of windows
    stopped = start_speakers(np.tile(conversation, 8), options)
    stopped.cancel()
    with pytest.raises(Stopped):
        stopped.diarization()
