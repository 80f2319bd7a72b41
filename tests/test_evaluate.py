"""Evaluation: normalisers, manifests, scores equal to jiwer's, term recall, ``tingxie eval`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import jiwer
import pytest
from conftest import DATA, GOLDEN, REPO, golden, manifest_rows, require_shared

from tingxie.errors import TingxieError
from tingxie.evaluate import ManifestError, read_manifest, write_report
from tingxie.normalizers import basic_normalize, english_normalize, normalize, scoring_tokens
from tingxie.scoring import count_term, score_pairs, terms_in

# --- the known case: our numbers are jiwer's on the normalised strings --------------------------------

REFS = ["And so, my fellow Americans, ask not what your country can do for you.",
        "He hoped there would be stew for dinner, twenty five turnips.",
        "The colour of the horizon."]
HYPS = ["and so my fellow american ask not what you're country can do for you",
        "he hoped they would be stew for dinner 25 turnips and carrots",
        "the color of a horizon"]


def test_corpus_wer_and_cer_equal_jiwer_on_normalised_text():
    scores = score_pairs(REFS, HYPS, "en")
    refs = [english_normalize(r).strip() for r in REFS]
    hyps = [english_normalize(h).strip() for h in HYPS]
    assert scores.wer == jiwer.wer(refs, hyps)
    assert scores.cer == jiwer.cer(refs, hyps)
    for u, r, h in zip(scores.utterances, refs, hyps):
        assert (u.reference, u.hypothesis) == (r, h)
        assert u.wer == jiwer.wer(r, h) and u.cer == jiwer.cer(r, h)
    out = jiwer.process_words(refs, hyps)
    assert (scores.substitutions, scores.deletions, scores.insertions) == (out.substitutions, out.deletions, out.insertions)
    # corpus WER is total errors over total reference words, not the mean of the utterances' WERs
    assert scores.wer == pytest.approx(sum(u.errors for u in scores.utterances) / sum(u.reference_words for u in scores.utterances))


def test_hand_checked_example():
    # 8 reference words; "sat" -> "sit" is one substitution and "the" (second) one deletion: 2 / 8
    scores = score_pairs(["The cat sat on the mat today, fine."], ["the cat sit on mat today fine"], "en")
    assert scores.reference_words == 8
    assert (scores.substitutions, scores.deletions, scores.insertions) == (1, 1, 0)
    assert scores.wer == 0.25
    # numbers and British spelling are no errors once normalised
    assert score_pairs(["Twenty five percent of the colour."], ["25% of the color"], "en").wer == 0.0


def test_chinese_is_scored_by_characters():
    assert normalize("换一首歌。", "zh") == "换一首歌"
    assert scoring_tokens("换一首 歌!", "zh") == "换 一 首 歌"
    scores = score_pairs(["换一首歌"], ["换 一首哥"], "zh")  # one wrong character of four; spaces are no error
    assert scores.unit == "character"
    assert scores.wer == scores.cer == 0.25


def test_mixed_languages_per_utterance():
    scores = score_pairs(["Bonjour à tous !", "你好"], ["bonjour a tous", "你好"], ["fr", "zh"])
    assert scores.unit == "mixed"
    assert scores.utterances[0].wer == pytest.approx(1 / 3)  # the basic normaliser keeps accents: à != a
    assert scores.utterances[1].wer == 0.0


# --- normalisers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("twenty five", "25"),
    ("one hundred and two", "102"),
    ("5 percent", "5%"),
    ("seventy six per cent", "76%"),
    ("two dollars and seventy cents", "$2.70"),
    ("$20 million", "$20000000"),
    ("nineteen fifties", "1950s"),
    ("thirty first", "31st"),
    ("double oh seven", "007"),
    ("nine one one", "911"),
    ("minus 500", "-500"),
    ("three and a half million", "3500000"),
    ("1,000 people", "1000 people"),
    ("one", "one"),
    ("Hmm, uh, I think [laughter] it's (maybe) fine.", "i think it is fine"),
    ("<noise> Mr. Smith won't go", "mister smith will not go"),
    ("The colour of the organisation's theatre", "the color of the organization's theater".replace("'s", " is")),
    ("Café naïve", "cafe naive"),
])
def test_english_normaliser(text, expected):
    assert english_normalize(text).strip() == expected


def test_basic_normaliser():
    assert basic_normalize("Bonjour, Ça VA ? [rires]").strip() == "bonjour ça va"
    assert basic_normalize("Straße — «Grüß» (leise)").strip() == "straße grüß"
    assert normalize("ＡＢＣ１２３", "de") == "abc123"  # NFKC folds full-width forms


def _shared_english_texts() -> list[str]:
    texts = [r["reference"] for r in manifest_rows() if r["language"] == "en" and r["reference"]]
    for path in sorted(GOLDEN.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("language", "en") == "en":
            texts += [data["text"], *(s["text"] for s in data["segments"])]
    return texts


def test_agrees_with_whisper_english_normaliser_on_shared_texts(shared):
    # openai-whisper is not a dependency; transformers (which peft brings) carries a copy of its
    # EnglishTextNormalizer, given the same British -> American list that we ship
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    from tingxie.normalizers.english import spelling_map

    reference = EnglishTextNormalizer(spelling_map())
    texts = _shared_english_texts()
    assert len(texts) > 100
    disagree = [t for t in texts if reference(t).strip() != english_normalize(t).strip()]
    assert not disagree, f"{len(disagree)} of {len(texts)} differ, e.g. {disagree[:3]}"


def test_agrees_with_whisper_english_normaliser_on_number_phrases():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    from tingxie.normalizers.english import spelling_map

    reference = EnglishTextNormalizer(spelling_map())
    words = ("zero oh one two three five seven eleven twelve nineteen twenty forty ninety hundred thousand million "
             "billions thousandth first second fifth twelfth sixties and a half point double triple minus plus dollars "
             "cents pounds euros percent per cent the of mr. won't he's 3 14 3.5 2,000 $5 £7 10th 1990s b52 $0.36 . , [x] (y) uh").split()
    import random

    rng = random.Random(0)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) for _ in range(3000)]
    disagree = [t for t in texts if reference(t) != english_normalize(t)]
    assert not disagree, disagree[:5]


# --- manifests -------------------------------------------------------------------------------------------

def _audio(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    return tmp_path / "a.wav"


def test_manifest_formats_and_columns(tmp_path):
    _audio(tmp_path)
    (tmp_path / "m.tsv").write_text("audio\ttext\tterms\tsnr\na.wav\tHello ComfyUI\tComfyUI| LoRA \t10\n", encoding="utf-8")
    (tmp_path / "m.csv").write_text("Text,Audio,language\n\"Bonjour, toi\",a.wav,French\n", encoding="utf-8")
    (tmp_path / "m.jsonl").write_text('{"audio": "a.wav", "text": "hi", "terms": ["x"]}\n\n', encoding="utf-8")
    tsv = read_manifest(tmp_path / "m.tsv")[0]
    assert tsv.audio == (tmp_path / "a.wav").resolve()
    assert (tsv.text, tsv.terms, tsv.language, tsv.extra) == ("Hello ComfyUI", ("ComfyUI", "LoRA"), None, (("snr", "10"),))
    csv_row = read_manifest(tmp_path / "m.csv")[0]
    assert (csv_row.text, csv_row.language) == ("Bonjour, toi", "fr")
    assert read_manifest(tmp_path / "m.jsonl")[0].terms == ("x",)


@pytest.mark.parametrize("content, message", [
    ("path\treference\na.wav\thi\n", "must name the columns audio and text; missing audio, text"),
    ("audio\ttext\n", "has no utterances"),
    ("audio\ttext\nmissing.wav\thi\n", "1 audio file(s) not found"),
    ("audio\ttext\tlanguage\na.wav\thi\tklingon\n", "unknown language"),
    ("audio\ttext\n\thi\n", "the audio column is empty"),
])
def test_manifest_errors_are_clear(tmp_path, content, message):
    _audio(tmp_path)
    path = tmp_path / "m.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, TingxieError)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.tsv")


def test_cli_reports_manifest_error(tmp_path):
    (tmp_path / "m.tsv").write_text("path\treference\nx\ty\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "tingxie", "eval", str(tmp_path / "m.tsv")], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2
    assert "tingxie eval: error:" in run.stderr and "missing audio, text" in run.stderr and "Traceback" not in run.stderr


def test_help_states_every_default():
    run = subprocess.run([sys.executable, "-m", "tingxie", "eval", "--help"], capture_output=True, text=True, cwd=REPO,
                         env={"COLUMNS": "400", "PATH": ""})
    assert run.returncode == 0
    entries: list[str] = []  # one per option: its line and the indented lines that continue its help
    for line in run.stdout.splitlines():
        if line.startswith("  -"):
            entries.append(line)
        elif entries and line.startswith("    "):
            entries[-1] += " " + line.strip()
    options = [e for e in entries if not e.lstrip().startswith("-h")]
    assert len(options) > 20
    assert all("(default:" in line for line in options), [line for line in options if "(default:" not in line]


def test_report_written_atomically(tmp_path):
    path = write_report({"wer": 0.5}, tmp_path / "sub" / "r.json")
    assert json.loads(path.read_text()) == {"wer": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


# --- term recall -----------------------------------------------------------------------------------------

def test_term_recall_known_case():
    refs = ["Open the ComfyUI folder, then the ComfyUI menu.", "Train a LoRA adapter.", "Nothing here."]
    hyps = ["open the comfy ui folder then the comfyui menu", "train a lora adapter", "nothing here"]
    scores = score_pairs(refs, hyps, "en", terms=[("ComfyUI",), ("LoRA", "adapter"), ()])
    # ComfyUI occurs twice and is heard once; LoRA and adapter once each and both heard: 3 of 4
    assert (scores.term_hits, scores.term_occurrences) == (3, 4)
    assert scores.term_recall == 0.75
    assert scores.utterances[0].terms_missed == ("ComfyUI",)
    assert scores.utterances[1].terms_hit == ("LoRA", "adapter")
    assert score_pairs(refs, hyps, "en").term_recall is None


def test_terms_match_whole_words_case_insensitively():
    assert count_term("lora", "explorations of lora", "en") == 1
    assert count_term("new york", "in new york city new yorkers", "en") == 1
    assert terms_in("We use LoRA and PEFT.", ("lora", "peft", "qlora"), "en") == ("lora", "peft")
    assert count_term("一首", "换一首歌", "zh") == 1


# --- end to end with the real tiny.en ----------------------------------------------------------------------

E2E = ("jfk", "libri_horizon", "libri_1089-134691-0000")


def _e2e_manifest(tmp_path) -> tuple:
    require_shared()
    rows = {r["id"]: r for r in manifest_rows()}
    lines = ["audio\ttext\tterms"]
    for row_id in E2E:
        terms = "Americans|country" if row_id == "jfk" else ""
        lines.append(f"{DATA / rows[row_id]['path']}\t{rows[row_id]['reference']}\t{terms}")
    path = tmp_path / "m.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, [rows[i]["reference"] for i in E2E]


def test_tingxie_eval_end_to_end_matches_jiwer_on_golden_text(tmp_path):
    manifest, refs = _e2e_manifest(tmp_path)
    report_path = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "tingxie", "eval", str(manifest), "--model", "tiny.en", "--compute_type", "float32", "--beam_size", "None",
         "--best_of", "None", "--report", str(report_path), "--progress", "False", "--compare_option", "beam_size=5"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(report_path.read_text(encoding="utf-8"))
    for key, name in (("greedy", report), ("beam5", report["compare"])):
        hyps = [golden(f"{i}.{key}")["text"] for i in E2E]
        assert [u["hypothesis"] for u in name["utterances"]] == [h.strip() for h in hyps]
        refs_n = [english_normalize(r).strip() for r in refs]
        hyps_n = [english_normalize(h).strip() for h in hyps]
        assert name["wer"] == jiwer.wer(refs_n, hyps_n)
        assert name["cer"] == jiwer.cer(refs_n, hyps_n)
        assert name["n"] == 3 and name["term_occurrences"] == 3 and name["rtf"] > 0
    assert report["compare"]["changes"] == ["beam_size=5"]
    assert report["compare"]["options"]["decoding"]["beam_size"] == 5 and report["options"]["decoding"]["beam_size"] is None
    assert report["difference"]["wer"] == report["compare"]["wer"] - report["wer"]
    assert "jfk.flac" in run.stdout and "WER" in run.stdout and "B - A:" in run.stdout


def test_finetune_evaluate_all_on_a_raw_module(tmp_path, tiny_en_torch):
    from tingxie.finetune.config import FinetuneConfig
    from tingxie.finetune.evals import evaluate_all

    require_shared()
    row = next(r for r in manifest_rows() if r["id"] == "libri_1089-134691-0000")
    manifest = tmp_path / "m.tsv"
    manifest.write_text(f"audio\ttext\n{DATA / row['path']}\t{row['reference']}\n", encoding="utf-8")
    config = FinetuneConfig(train=str(manifest), out=str(tmp_path), eval=(str(manifest),), progress=False)
    tiny_en_torch.module.train()
    logged = []
    result = evaluate_all(tiny_en_torch.module, config, tmp_path / "eval.json", log=logged.append, heads=tiny_en_torch.alignment_heads)
    assert tiny_en_torch.module.training  # the module's mode is given back
    tiny_en_torch.module.eval()
    ref, hyp = english_normalize(row["reference"]).strip(), english_normalize(golden("libri_1089-134691-0000.greedy")["text"]).strip()
    expected = jiwer.wer(ref, hyp)
    assert result == {str(manifest): {"wer": expected, "cer": jiwer.cer(ref, hyp), "term_recall": None}}
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved[str(manifest)]["wer"] == expected and logged
