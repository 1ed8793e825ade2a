"""bench/parity.py, the parity report users run on their own checkpoint and audio, checked on cases whose
answer is known: the same weights on both sides (identical, logits within 1e-4), and different weights
(the report's tokens are each engine's own, and it points at their first difference).

Oracle: transformers' generate() through oracle.hf_tokens, independent of the report's code.
"""

import json
import sys

import parity
import pytest
import torch

from helpers import AUDIO_DIR, BASE_MODEL, PROMPT, needs_shared
from oracle import hf_tokens
from distilwhisper import load_model

ENGLISH = {"language": "en", "task": "transcribe"}


@pytest.mark.parametrize("ours, theirs, expected", [
    ([1, 2, 3], [1, 2, 3], None), ([], [], None), ([1, 2, 3], [1, 5, 3], 1), ([7], [8], 0),
    ([1, 2], [1, 2, 3], 2), ([1, 2, 3], [1, 2], 2), ([], [4], 0),
])  # fmt: skip
def test_first_difference(ours, theirs, expected):
    assert parity.first_difference(ours, theirs) == expected


def test_without_transformers_the_message_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers fails, as where it is not installed
    assert parity.main(["speech.wav", "--model", "base"]) == 2  # before any file or model is looked at
    assert capsys.readouterr().err == 'bench/parity.py needs transformers: pip install "distilwhisper[bench]"\n'


@pytest.fixture(scope="module")
def tiny_checkpoints(random_checkpoint):
    """Two random checkpoints of one shape: the same architecture, different weights."""
    return [random_checkpoint(seed, "distil-2dec", tokenizer="base") for seed in (5, 6)]


def random_features(batch: int) -> torch.Tensor:
    return torch.randn(batch, 80, 3000, generator=torch.Generator().manual_seed(31))


@needs_shared
@pytest.mark.parametrize("num_beams", [1, 3])
def test_same_weights_give_identical_tokens_and_logits_within_tolerance(tiny_checkpoints, num_beams):
    from transformers import WhisperForConditionalGeneration

    path = tiny_checkpoints[0]
    hf_model = WhisperForConditionalGeneration.from_pretrained(path).eval()
    features = random_features(3)
    reports = parity.compare(load_model(path, device="cpu"), hf_model, features, ["a", "b", "c"], PROMPT, 30, num_beams,
                             **ENGLISH)  # fmt: skip
    assert [r.theirs for r in reports] == hf_tokens(hf_model, features, max_new_tokens=30, num_beams=num_beams)
    assert all(r.identical and r.ours == r.theirs for r in reports)
    assert all(r.max_logit_difference < parity.TOLERANCE for r in reports)


@needs_shared
def test_different_weights_are_reported_with_the_first_differing_token(tiny_checkpoints):
    from transformers import WhisperForConditionalGeneration

    ours_path, other_path = tiny_checkpoints
    hf_ours, hf_other = (WhisperForConditionalGeneration.from_pretrained(p).eval() for p in tiny_checkpoints)
    features = random_features(2)
    reports = parity.compare(load_model(ours_path, device="cpu"), hf_other, features, ["a", "b"], PROMPT, 30, **ENGLISH)
    assert [r.ours for r in reports] == hf_tokens(hf_ours, features, max_new_tokens=30)
    assert [r.theirs for r in reports] == hf_tokens(hf_other, features, max_new_tokens=30)
    for r in reports:
        k = r.first_difference
        assert k is not None and r.ours[:k] == r.theirs[:k]
        assert k == min(len(r.ours), len(r.theirs)) or r.ours[k] != r.theirs[k]
        assert r.max_logit_difference > 1.0


@needs_shared
def test_the_report_on_real_speech(tmp_path, capsys):
    audio = str(AUDIO_DIR / "short" / "cmu_arctic_prompts_cathy_a0110.wav")
    out = tmp_path / "parity.json"
    assert parity.main([audio, "--model", str(BASE_MODEL), "--language", "en", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "identical" in lines[1] and audio in lines[1]
    assert lines[-1].startswith("1 of 1 files token-identical to transformers")
    report = json.loads(out.read_text())
    assert report["ok"] and report["max_logit_difference"] < parity.TOLERANCE and report["reports"][0]["theirs"]
