"""Real-weight parity on real speech: OpenAI's Whisper base (../shared/models/whisper-base).

Oracles: transformers' WhisperForConditionalGeneration.generate (tokens), its encoder and forward pass
(features, logits), its tokenizer's batch_decode and its ASR pipeline (text) — all on the same weights,
fp32, CPU, fed the same samples (read once by our load_audio). Our reading of files is checked against
decoders of our own: transformers' ffmpeg_read and the stdlib's wave module.
"""

import wave

import numpy as np
import pytest
import torch

from helpers import AUDIO_DIR, BASE_MODEL, needs_ffmpeg, needs_shared, read_manifest
from oracle import hf_tokens

pytestmark = needs_shared

TOLERANCE = 1e-4  # max abs difference of encoder output and logits, fp32
BATCH = 9  # the short files are decoded in batches of this size: sequences finish at different steps
N_SHORT = len(read_manifest()) if (AUDIO_DIR / "manifest.tsv").exists() else 1


@pytest.fixture(scope="module")
def ours():
    import distilwhisper

    return distilwhisper.load_model(BASE_MODEL, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def oracle():
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(BASE_MODEL, dtype=torch.float32).eval()
    return model, WhisperProcessor.from_pretrained(BASE_MODEL)


@pytest.fixture(scope="module")
def speech():
    from distilwhisper.audio import load_audio

    return [(path.name, load_audio(path)) for path, _ in read_manifest()]


def hf_features(processor, waveforms) -> torch.Tensor:
    return processor.feature_extractor(waveforms, sampling_rate=16000, return_tensors="pt").input_features


def test_encoder_and_logits_match_transformers_on_speech(ours, oracle, speech):
    model, processor = oracle
    mel = hf_features(processor, [speech[0][1]])  # the same input for both: this test is about the network
    tokens = torch.tensor([[50258, 50259, 50359, 50363, *processor.tokenizer.encode(" And so my fellow", add_special_tokens=False)]])
    with torch.no_grad():
        expected_features = model.model.encoder(mel).last_hidden_state
        expected_logits = model(input_features=mel, decoder_input_ids=tokens).logits
    assert (ours.model.encoder(mel) - expected_features).abs().max().item() < TOLERANCE
    assert (ours.model(mel, tokens) - expected_logits).abs().max().item() < TOLERANCE


@pytest.mark.parametrize("start", range(0, N_SHORT, BATCH))
def test_batched_greedy_tokens_and_text_match_transformers(ours, oracle, speech, start):
    """Every short file: our features, encoder and decoding against transformers' whole path."""
    model, processor = oracle
    names, waveforms = zip(*speech[start : start + BATCH])
    expected = hf_tokens(model, hf_features(processor, list(waveforms)), max_new_tokens=128)
    got = ours.transcribe(list(waveforms), language="en", task="transcribe", max_new_tokens=128)
    for name, result, tokens in zip(names, got, expected):
        assert result.tokens == tokens, name
        assert result.text == processor.batch_decode([tokens], skip_special_tokens=True)[0], name


def test_single_file_text_matches_asr_pipeline(ours, speech):
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(BASE_MODEL), device="cpu", dtype=torch.float32)
    name, waveform = speech[-1]
    # num_beams=1: left unset, the pipeline searches with 5 beams (whisper-base's generation config names none).
    # No language on either side: both detect it. task="transcribe": without it generate() leaves the task token
    # out, where we transcribe (Transcriber.language_and_task).
    expected = asr({"raw": waveform, "sampling_rate": 16000}, generate_kwargs={"num_beams": 1, "task": "transcribe"})
    assert ours.transcribe(waveform).text == expected["text"], name


def transformers_ffmpeg_read(path) -> np.ndarray:
    from transformers.pipelines.audio_utils import ffmpeg_read

    return ffmpeg_read(path.read_bytes(), 16000)


def stdlib_wave_read(path) -> np.ndarray:
    with wave.open(str(path)) as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, 16000), "expected 16-bit 16 kHz mono"
        return np.frombuffer(f.readframes(f.getnframes()), "<i2") / np.float32(32768)


@pytest.mark.parametrize(
    "reader, independent_read",
    [pytest.param("ffmpeg", transformers_ffmpeg_read, marks=needs_ffmpeg), ("builtin", stdlib_wave_read)],
)
def test_path_input_equals_array_from_an_independent_decoder(ours, monkeypatch, reader, independent_read):
    from distilwhisper import audio

    path = min((p for p, _ in read_manifest()), key=lambda p: p.stat().st_size)  # the shortest keeps this cheap
    if reader == "builtin":
        monkeypatch.setattr(audio.shutil, "which", lambda name: None)  # as where ffmpeg is not installed
    expected = independent_read(path)

    np.testing.assert_allclose(audio.load_audio(path), expected, rtol=0, atol=1 / 32768)
    from_path, from_array = ours.transcribe(path), ours.transcribe(expected)
    assert (from_path.text, from_path.tokens) == (from_array.text, from_array.tokens)
