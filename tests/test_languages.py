"""Any Whisper checkpoint: English-only (.en) checkpoints, and language detection on multilingual ones.

Oracle: transformers' WhisperForConditionalGeneration.generate() with default arguments (and its
detect_language) on the very checkpoint we load: random-weight tiny configs saved as transformers' converter
shapes them (oracle.save_random_whisper, english_only for .en), and whisper-base on real speech. Random
inputs of different loudness detect different languages on random weights, so a batch whose inputs disagree
needs no forcing.
"""

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import BASE_MODEL, LANGUAGES, NO_TIMESTAMPS, SOT, add_base_tokenizer, checkpoint_rules, decode, needs_shared, read_manifest, tokens_of
from distilwhisper import DistilWhisperError, load_model, windows
from distilwhisper.decoding import SuppressAtBegin, SuppressTokens, detect_language
from distilwhisper.languages import language_code
from distilwhisper.weights import load_generation_defaults, load_whisper

EN_SOT, EN_EOT, EN_NO_TIMESTAMPS = 50257, 50256, 50362  # English-only ids: one lower


def oracle(path):
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()


def generated(output: torch.Tensor, eot: int) -> list[list[int]]:
    """generate()'s rows up to the end token (transformers 5 returns only the generated tokens)."""
    return [row[: row.index(eot)] if eot in row else row for row in output.tolist()]


def random_mel(n_mels: int, batch: int, seed: int) -> torch.Tensor:
    """Random log-mel inputs of different loudness: at one loudness, random weights hear one language."""
    loudness = torch.logspace(-1.5, 1, batch)[:, None, None]  # 0.03 to 10
    return torch.randn(batch, n_mels, 3000, generator=torch.Generator().manual_seed(seed)) * loudness


def noise(n: int, seed: int) -> list[np.ndarray]:
    """n clips of noise of different loudness and length, under 30 s."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(int(rng.uniform(3, 20) * 16000)) * rng.uniform(0.02, 0.5)).astype(np.float32)
            for _ in range(n)]  # fmt: skip


def features(audio: list[np.ndarray], n_mels: int = 80) -> torch.Tensor:
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=n_mels)(audio, sampling_rate=16000, return_tensors="pt").input_features


# --- language detection: the function and the loop, random weights (always run) --------------------------------


@pytest.fixture(scope="module", params=["tiny-4x4", "v3-128mel"])
def multilingual(request, random_checkpoint):
    path = random_checkpoint(51, request.param)
    return path, oracle(path), load_whisper(path)


def test_detected_languages_equal_transformers_detect_language(multilingual):
    """A batch of 8 random inputs: the same language token for each, and they do not all agree."""
    _, hf, ours = multilingual
    mel = random_mel(ours.dims.n_mels, 8, seed=52)
    expected = hf.detect_language(input_features=mel).tolist()
    ours.decoder.setup_caches(ours.encoder(mel))
    got = detect_language(ours, len(mel), SOT, LANGUAGES).tolist()
    assert got == expected
    assert len(set(got)) > 1


def test_greedy_decode_with_each_inputs_language_equals_generate_defaults(multilingual):
    """generate() without a language detects each input's and decodes it in that language: per-sequence
    prompts in one batch, decoded from the caches detection read."""
    path, hf, ours = multilingual
    mel = random_mel(ours.dims.n_mels, 4, seed=53)
    defaults = load_generation_defaults(path)
    # Random weights emit timestamps after <|notimestamps|>, which generate() then cuts out as segments: suppress them.
    suppress = [*defaults.suppress_tokens, *range(NO_TIMESTAMPS + 1, ours.dims.n_vocab)]
    # task="transcribe": without it generate() leaves the task token out, where we transcribe (language_and_task)
    expected = generated(hf.generate(mel, max_new_tokens=12, task="transcribe", suppress_tokens=suppress), eot=50257)
    rules = (SuppressTokens(suppress), SuppressAtBegin(defaults.begin_suppress_tokens))
    audio_features = ours.encoder(mel)
    ours.decoder.setup_caches(audio_features)
    detected = detect_language(ours, len(mel), SOT, LANGUAGES).tolist()
    transcribe = hf.generation_config.task_to_id["transcribe"]
    prompts = [[SOT, language, transcribe, NO_TIMESTAMPS] for language in detected]
    got = tokens_of(decode(ours, audio_features, prompts, 12, rules))
    assert got == expected and len(set(detected)) > 1


# --- English-only checkpoints, random weights -------------------------------------------------------------------


@pytest.fixture(scope="module")
def english_only(random_checkpoint):
    path = random_checkpoint(54, "distil-2dec", english_only=True)
    return path, oracle(path), load_whisper(path)


def test_english_only_greedy_decode_equals_generate_defaults(english_only):
    """The prompt .en checkpoints were trained with, <|startoftranscript|><|notimestamps|>, and their ids."""
    path, hf, ours = english_only
    mel = random_mel(ours.dims.n_mels, 3, seed=55)
    expected = generated(hf.generate(mel, max_new_tokens=15), eot=EN_EOT)
    got = tokens_of(decode(ours, ours.encoder(mel), [EN_SOT, EN_NO_TIMESTAMPS], 15, checkpoint_rules(path), eot=EN_EOT))
    assert got == expected


@pytest.fixture(scope="module")
def english_checkpoint(random_checkpoint):
    return random_checkpoint(54, "distil-2dec", tokenizer="english", english_only=True)  # english_only's, with .en tokenizer files


def test_english_only_tokenizer_shifts_every_special_id_and_equals_transformers(english_checkpoint):
    from transformers import WhisperTokenizerFast

    tok = load_model(english_checkpoint, device="cpu").tokenizer
    hf = WhisperTokenizerFast.from_pretrained(english_checkpoint)
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>", "<|0.00|>"]  # fmt: skip
    assert [tok.eot, tok.sot, tok.language_token("en"), tok.translate, tok.transcribe, tok.sot_prev,
            tok.no_speech, tok.no_timestamps, tok.timestamp_begin] == hf.convert_tokens_to_ids(specials)  # fmt: skip
    assert (tok.eot, tok.sot, tok.no_timestamps) == (EN_EOT, EN_SOT, EN_NO_TIMESTAMPS)
    assert len(tok.language_codes) == 99  # .en vocabularies keep the language tokens, unused
    text = " Mr. Quilter's 1,000 cafés — naïve? ¡Sí! 東京"
    ids = tok.encode(text)
    assert ids == hf.encode(text, add_special_tokens=False)
    framed = [EN_SOT, EN_NO_TIMESTAMPS, *ids, 50400, EN_EOT]
    assert tok.decode(framed) == hf.decode(framed, skip_special_tokens=True) == text


def older_generation_config(path):
    """An older .en generation config: no is_multilingual, no forced_decoder_ids (the vocabulary tells); and
    a shorter max_length, to keep the test cheap."""
    generation = json.loads((path / "generation_config.json").read_text())
    for field in ("is_multilingual", "forced_decoder_ids"):
        generation.pop(field, None)
    (path / "generation_config.json").write_text(json.dumps(generation | {"max_length": 40}))


@pytest.mark.parametrize("config", ["as-converted", "older-config"])
def test_english_only_transcribe_defaults_equal_generate_defaults(english_checkpoint, config, copied):
    """A batch of 3, default arguments on both sides (max_length 448: up to 446 new tokens after the
    2-token prompt)."""
    path = english_checkpoint
    if config == "older-config":
        path = copied(english_checkpoint)
        older_generation_config(path)
    audio = noise(3, seed=56)
    expected = generated(oracle(path).generate(features(audio)), eot=EN_EOT)
    model = load_model(path, device="cpu")
    results = model.transcribe(audio)
    assert model.plan().prompt() == [EN_SOT, EN_NO_TIMESTAMPS] and not model.is_multilingual
    assert [r.tokens for r in results] == [[t for t in row if t < EN_EOT] for row in expected]
    assert [r.language for r in results] == ["en"] * 3
    assert model.transcribe(audio[0], language="English", task="transcribe").tokens == results[0].tokens


@pytest.mark.parametrize(
    "options, message",
    [({"language": "fr"}, "not language 'fr'"), ({"language": "german"}, "not language 'german'"),
     ({"task": "translate"}, "not task 'translate'"), ({"language": "en", "task": "translate"}, "not task 'translate'")],
)  # fmt: skip
def test_english_only_refuses_other_languages_and_translation(english_checkpoint, options, message):
    model = load_model(english_checkpoint, device="cpu")
    with pytest.raises(DistilWhisperError, match=f"this checkpoint is English-only: it can only transcribe English, {message}"):
        model.transcribe(noise(1, seed=57)[0], **options)


def test_english_only_cli_refuses_french(english_checkpoint, capsys):
    from distilwhisper.cli import main

    assert main(["x.wav", "--model", str(english_checkpoint), "--language", "fr"]) == 2
    assert "English-only" in capsys.readouterr().err


# --- language detection through transcribe(), random weights ---------------------------------------------------


@pytest.fixture(scope="module")
def detecting_checkpoint(multilingual, tmp_path_factory):
    if not BASE_MODEL.exists():
        pytest.skip(f"real fixtures not found at {BASE_MODEL} (whisper-base's tokenizer files)")
    return add_base_tokenizer(Path(shutil.copytree(multilingual[0], tmp_path_factory.mktemp("detecting") / "model")))


def test_transcribe_detects_each_inputs_language_as_generate_does(detecting_checkpoint, multilingual):
    """Default arguments on both sides, a batch of 5 inputs that detect different languages."""
    hf = multilingual[1]
    audio = noise(5, seed=58)
    input_features = features(audio, hf.config.num_mel_bins)
    expected = generated(hf.generate(input_features, max_new_tokens=10, task="transcribe"), eot=50257)
    model = load_model(detecting_checkpoint, device="cpu")
    results = model.transcribe(audio, max_new_tokens=10, no_speech_threshold=None)
    detected = [model.tokenizer.language_of(t) for t in hf.detect_language(input_features=input_features).tolist()]
    assert [r.tokens for r in results] == [[t for t in row if t < 50257] for row in expected]  # text tokens
    assert [r.language for r in results] == detected and len(set(detected)) > 1


def test_detection_runs_the_encoder_once_per_batch(detecting_checkpoint):
    model = load_model(detecting_checkpoint, device="cpu")
    calls = []
    model.model.encoder.register_forward_hook(lambda module, args, output: calls.append(output.shape[0]))
    model.transcribe(noise(3, seed=59), max_new_tokens=2, batch_size=2)
    assert calls == [2, 1]


def test_a_given_language_is_not_detected(detecting_checkpoint, monkeypatch):
    model = load_model(detecting_checkpoint, device="cpu")
    monkeypatch.setattr(windows, "detect_language", None)  # any call would fail
    assert [r.language for r in model.transcribe(noise(2, seed=60), language="french", max_new_tokens=2)] == ["fr", "fr"]


# --- whisper-base on real speech ----------------------------------------------------------------------------


@needs_shared
def test_real_speech_detects_english_as_transformers_does():
    """Ten short files drawn from the manifest: transformers detects <|en|>; we detect the same, per input of a
    batch. (Ten, not all: each side encodes every file, and the other real-speech tests read all of them.)"""
    from distilwhisper.audio import load_audio

    files = random.Random(8).sample([path for path, _ in read_manifest()], 10)
    audio = [load_audio(path) for path in files]
    hf = oracle(BASE_MODEL)
    expected = hf.detect_language(input_features=features(audio)).tolist()
    model = load_model(BASE_MODEL, device="cpu")
    got = [r.language for r in model.transcribe(files, max_new_tokens=1, batch_size=10)]
    assert expected == [model.tokenizer.language_token("en")] * len(files)
    assert got == ["en"] * len(files)


@pytest.mark.parametrize("language", [5, b"en", None, ["en"]])
def test_a_language_that_is_not_text_is_a_clear_error(language):
    """From the caller or from a checkpoint's generation_config.json ("language": 5), not an AttributeError."""
    with pytest.raises(DistilWhisperError, match="a language is a name or code such as 'en' or 'french', not"):
        language_code(language)
