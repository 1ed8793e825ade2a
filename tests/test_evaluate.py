"""`python -m distilwhisper.evaluate`: WER as Distil-Whisper computes it, and manifests that cannot be used.

Oracle for the WER: transformers' own greedy output on the same audio, normalised by transformers'
EnglishTextNormalizer with the checkpoint's spelling map, scored by jiwer over the lists with empty
references left out (Distil-Whisper's training/run_eval.py).
"""

import csv
import json
import re
import shutil
import sys
from pathlib import Path

import jiwer
import pytest
import torch
from helpers import AUDIO_DIR, BASE_MODEL, needs_shared
from oracle import hf_tokens

from distilwhisper.audio import load_audio
from distilwhisper.evaluate import corpus_wer, main, read_manifest, summary_line

# Real speech for the WER test, short files only (the long ones take minutes through both engines; long-form
# parity is tests/test_longform.py's): four sources, numbers, quotes, fillers and word errors among them.
WER_FILES = ["librivox_sense_and_sensibility_0920.wav", "mfa_crossword.wav", "ljspeech_LJ001-0003.wav",
             "ljspeech_LJ001-0007.wav", "cmu_arctic_prompts_cathy_a0108.wav", "cmu_arctic_prompts_cathy_a0110.wav"]


def write_manifest(path: Path, rows: list[list[str]], header=("file", "reference_text")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter="\t").writerows([list(header), *rows])
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_corpus_wer_is_all_errors_over_all_reference_words_leaving_empty_references_out():
    references, hypotheses = ["a b c", "", "d e"], ["a x c", "anything", ""]  # 1 + 2 errors over 5 words
    assert corpus_wer(references, hypotheses) == 100 * jiwer.wer(["a b c", "d e"], ["a x c", ""]) == 60.0
    assert corpus_wer([""], ["words"]) is None


def bad_manifests(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "a.wav").write_bytes(b"")
    bad_utf8 = tmp_path / "latin1.tsv"
    bad_utf8.write_bytes("file\treference_text\na.wav\tcaf\xe9\n".encode("latin-1"))
    return {
        "missing": (tmp_path / "nope.tsv", "manifest not found"),
        "empty": (write_manifest(tmp_path / "empty.tsv", [], header=()), "is empty: expected a header line"),
        "no rows": (write_manifest(tmp_path / "header.tsv", []), "has a header but no rows"),
        "missing column": (write_manifest(tmp_path / "cols.tsv", [["a.wav", "x"]], header=("file", "text")),
                           r"has no column reference_text \(its columns: file, text\)"),  # fmt: skip
        "missing audio": (write_manifest(tmp_path / "audio.tsv", [["a.wav", "x"], ["b.wav", "y"], ["c.wav", "z"]]),
                          "line 3: audio file not found: .*b.wav \\(and 1 more\\)"),  # fmt: skip
        "short row": (write_manifest(tmp_path / "short.tsv", [["a.wav"]]), "line 2: no reference_text"),
        "not utf-8": (bad_utf8, "is not UTF-8 text"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "no rows", "missing column", "missing audio", "short row", "not utf-8"])
def test_a_manifest_that_cannot_be_used_is_one_line_before_the_model_loads(tmp_path, capsys, case):
    manifest, message = bad_manifests(tmp_path)[case]
    assert main([str(manifest), "--model", str(tmp_path / "no-model")]) == 2  # the model is never reached
    err = one_line_error(capsys)
    assert err.startswith("distilwhisper: error: ")
    assert re.search(message, err), err


@pytest.mark.parametrize("scored, words, expected", [
    (1, 1, "WER 0.00% over 1 file (1 reference word)"), (2, 9, "WER 0.00% over 2 files (9 reference words)"),
])  # fmt: skip
def test_the_summary_counts_in_words_that_agree(scored, words, expected):
    summary = {"wer": 0.0, "scored": scored, "reference_words": words, "empty_references": 0, "failed": 0, "rtf": None}
    assert summary_line(summary) == expected


@needs_shared
def test_an_option_error_names_the_flag(tmp_path, capsys):
    (tmp_path / "a.wav").write_bytes(b"")  # never read: the option is refused first
    manifest = write_manifest(tmp_path / "m.tsv", [["a.wav", "x"]])
    assert main([str(manifest), "--model", str(BASE_MODEL), "--max-new-tokens", "500"]) == 2
    assert one_line_error(capsys) == ("distilwhisper: error: --max-new-tokens must be between 1 and 444 (the decoder "
                                      "holds 448 positions, the prompt takes 4)\n")  # fmt: skip


def test_other_column_names_and_a_limit(tmp_path):
    for name in "ab":
        (tmp_path / f"{name}.wav").write_bytes(b"")
    manifest = write_manifest(tmp_path / "m.tsv", [["x", "a.wav", "hello"], ["y", "b.wav", "bye"]], header=("id", "path", "text"))
    rows = read_manifest(manifest, "path", "text", limit=1)
    assert [(r.file, r.path, r.reference) for r in rows] == [("a.wav", tmp_path / "a.wav", "hello")]


def test_without_jiwer_the_message_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "jiwer", None)  # import jiwer raises ImportError, as where it is not installed
    assert main([str(tmp_path / "m.tsv"), "--model", str(tmp_path)]) == 2
    assert 'pip install "distilwhisper[eval]"' in one_line_error(capsys)


@needs_shared
def test_a_file_that_fails_is_reported_and_the_others_still_count(random_checkpoint, copied, tmp_path, capsys):
    model = copied(random_checkpoint(3, tokenizer="base"))
    shutil.copy(BASE_MODEL / "normalizer.json", model)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEnot really")
    good = AUDIO_DIR / "short" / "pocketsphinx_goforward.wav"
    manifest = write_manifest(tmp_path / "m.tsv", [[str(good), "go forward ten meters"], ["broken.wav", "x"]])
    out = tmp_path / "out" / "wer.json"
    out.parent.mkdir()
    capsys.readouterr()  # what saving the checkpoint printed

    assert main([str(manifest), "--model", str(model), "--language", "en", "--max-new-tokens", "8", "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "could not decode" in captured.err and "broken.wav" in captured.err
    assert "1 failed" in captured.out.splitlines()[-1]
    report = json.loads(out.read_text())
    ok, failed = report["files"]
    assert failed["error"] and failed["wer"] is None and ok["error"] is None
    assert report["wer"] == ok["wer"] == 100 * jiwer.wer(ok["normalized_reference"], ok["normalized_hypothesis"])
    assert (report["scored"], report["failed"], report["reference_words"]) == (1, 1, 4)
    assert [p.name for p in out.parent.iterdir()] == ["wer.json"]  # written atomically: no temporary file left


@needs_shared
def test_wer_on_real_speech_equals_transformers_normaliser_and_jiwer_on_transformers_output(tmp_path):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    rows = [r for r in read_manifest(AUDIO_DIR / "manifest.tsv") if r.path.name in WER_FILES]
    assert len(rows) == len(WER_FILES)
    manifest = write_manifest(tmp_path / "m.tsv", [[str(r.path), r.reference] for r in rows])
    out = tmp_path / "wer.json"
    assert main([str(manifest), "--model", str(BASE_MODEL), "--language", "en", "--device", "cpu", "--json", str(out)]) == 0
    ours = json.loads(out.read_text())

    processor = WhisperProcessor.from_pretrained(BASE_MODEL)
    model = WhisperForConditionalGeneration.from_pretrained(BASE_MODEL, dtype=torch.float32).eval()
    features = processor.feature_extractor([load_audio(r.path) for r in rows], sampling_rate=16000, return_tensors="pt").input_features
    texts = processor.batch_decode(hf_tokens(model, features, max_new_tokens=444), skip_special_tokens=True)
    normalize = EnglishTextNormalizer(processor.tokenizer.english_spelling_normalizer)
    references, hypotheses = [normalize(r.reference) for r in rows], [normalize(t) for t in texts]

    assert [f["hypothesis"] for f in ours["files"]] == texts
    assert [f["wer"] for f in ours["files"]] == [100 * jiwer.wer(r, h) for r, h in zip(references, hypotheses)]
    assert ours["wer"] == 100 * jiwer.wer(references, hypotheses)  # every digit
    assert ours["wer"] > 0  # some words are wrong: the test compares errors, not only perfect transcripts


def test_a_json_output_in_a_missing_folder_fails_before_any_work(tmp_path, capsys):
    assert main([str(tmp_path / "m.tsv"), "--json", str(tmp_path / "no" / "wer.json")]) == 2
    assert "its folder does not exist" in one_line_error(capsys)
