"""Sequential long form against its oracle, transformers' generate() given the whole log-mel (its long-form mode:
the feature extractor with truncation=False, padding="longest" and the attention mask, return_timestamps=True,
return_segments=True): tokens, text and every segment's times and text, batched inputs of mixed lengths too.

Random-weight checkpoints on synthetic audio (they stop mid-segment often, so passes start mid-window) and
whisper-base on real speech: a long shared file, and concatenations of shared short files with short pauses.
generate() is called greedy (`num_beams=1`) unless a test names its beams.
"""

import numpy as np
import pytest
import torch

from helpers import AUDIO_DIR, BASE_MODEL, EOT, needs_shared
from distilwhisper import DistilWhisperError, Segment, load_model
from distilwhisper.audio import SAMPLE_RATE, load_audio
from distilwhisper.cli import main
from distilwhisper.sequential import Pass, pass_spans
from test_beam_search import concatenation, short_files
from test_longform import synthetic_speech
from test_timestamps import T0, timestamps_checkpoint, ts  # noqa: F401 - the fixture, shared

A, B, C = 400, 401, 402  # text tokens


def generate_long_form(model_dir, samples: list[np.ndarray], num_beams: int = 1, **generation) -> list[tuple[list[int], str, list[Segment]]]:
    """The oracle: each input's text tokens, text and segments from generate()'s long form, as one batch."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

    features = WhisperFeatureExtractor.from_pretrained(model_dir)(
        samples, sampling_rate=SAMPLE_RATE, return_tensors="pt", truncation=False, padding="longest", return_attention_mask=True)
    oracle = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = oracle.generate(features.input_features, attention_mask=features.attention_mask, return_timestamps=True,
                          return_segments=True, num_beams=num_beams, do_sample=False, **generation)  # fmt: skip
    tokenizer = WhisperTokenizer.from_pretrained(model_dir)
    results = []
    for sequence, segments in zip(out["sequences"], out["segments"]):
        texts = [[t for t in s["tokens"].tolist() if t < EOT] for s in segments]
        results.append(([t for t in sequence.tolist() if t < EOT], tokenizer.decode(sequence, skip_special_tokens=True),
                        [Segment(float(s["start"]), float(s["end"]), tokenizer.decode(t)) for s, t in zip(segments, texts)]))
    return results


def assert_equal(got, expected) -> None:
    tokens, text, segments = expected
    assert got.tokens == tokens
    assert got.text == text
    assert got.segments == segments


# --- the segments of one pass, by hand (generate's _retrieve_segment) --------------------------------------------


def test_pass_spans_cut_at_pairs_and_offset_by_where_the_pass_started():
    seek = 950  # 9.5 s
    spans = pass_spans(Pass([ts(0), A, ts(2), ts(2), B, ts(3), ts(3.5)], seek, 3000), T0, EOT)  # resumed at 3.00
    assert [(s.start, s.end, s.tokens) for s in spans] == [(9.5, 9.5 + 100 * 0.02, [A]), (9.5 + 100 * 0.02, 9.5 + 150 * 0.02, [B])]
    single = pass_spans(Pass([ts(0), A, ts(2), ts(2), B, ts(3)], 0, 3000), T0, EOT)
    assert [(s.start, s.end, s.tokens) for s in single] == [(0.0, 2.0, [A]), (2.0, 3.0, [B])]


def test_a_pass_without_a_pair_is_one_segment_to_its_last_timestamp_or_to_what_it_heard():
    assert [(s.start, s.end) for s in pass_spans(Pass([ts(0), A, B, ts(4)], 0, 3000), T0, EOT)] == [(0.0, 4.0)]
    assert [(s.start, s.end) for s in pass_spans(Pass([ts(0), A, B], 1000, 2001), T0, EOT)] == [(10.0, 10.0 + 1000 * 0.02)]
    assert [(s.start, s.end, s.tokens) for s in pass_spans(Pass([], 0, 3000), T0, EOT)] == [(0.0, 30.0, [])]


# --- random weights, synthetic audio -----------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [[47.3], [30.01, 64.2, 41.0]], ids=["one input", "a batch of three"])
def test_random_weights_equal_generate_long_form(timestamps_checkpoint, seconds):
    samples = [synthetic_speech(int(s * SAMPLE_RATE) + 77, seed=i + 3) for i, s in enumerate(seconds)]  # not whole frames
    expected = generate_long_form(timestamps_checkpoint, samples, language="en", task="transcribe", max_new_tokens=12)
    model = load_model(timestamps_checkpoint, device="cpu", dtype="float32")
    got = model.transcribe(samples, language="en", max_new_tokens=12, no_speech_threshold=None, return_timestamps=True,
                           long_form="sequential")  # fmt: skip
    for result, oracle in zip(got, expected):
        assert_equal(result, oracle)
    assert sum(len(r.segments) for r in got) > 2 * len(got)  # passes that start mid-window, not one segment per window
    plain = model.transcribe(samples, language="en", max_new_tokens=12, no_speech_threshold=None, long_form="sequential")
    assert [(r.text, r.tokens, r.segments) for r in plain] == [(r.text, r.tokens, []) for r in got]  # segments when asked


@pytest.mark.parametrize("beams", [2, 4])
def test_random_weights_with_beams_equal_generate_long_form_with_beams(timestamps_checkpoint, beams):
    samples = [synthetic_speech(int(s * SAMPLE_RATE) + 31, seed=i + 11) for i, s in enumerate([52.7, 33.4])]
    expected = generate_long_form(timestamps_checkpoint, samples, num_beams=beams, language="en", task="transcribe",
                                  max_new_tokens=12)  # fmt: skip
    model = load_model(timestamps_checkpoint, device="cpu", dtype="float32")
    options = dict(language="en", max_new_tokens=12, no_speech_threshold=None, return_timestamps=True, long_form="sequential")
    got = model.transcribe(samples, num_beams=beams, **options)
    for result, oracle in zip(got, expected):
        assert_equal(result, oracle)
    greedy = model.transcribe(samples, **options)
    assert [r.tokens for r in got] != [r.tokens for r in greedy]  # the beams chose differently somewhere


def test_short_inputs_beside_long_ones_are_decoded_as_ever(timestamps_checkpoint):
    model = load_model(timestamps_checkpoint, device="cpu", dtype="float32")
    short, long = synthetic_speech(12 * SAMPLE_RATE, seed=1), synthetic_speech(40 * SAMPLE_RATE, seed=2)
    options = {"language": "en", "max_new_tokens": 12, "no_speech_threshold": None}
    mixed = model.transcribe([short, long], long_form="sequential", **options)
    assert mixed[0] == model.transcribe(short, **options)
    assert mixed[1] == model.transcribe(long, long_form="sequential", **options)


# --- whisper-base, real speech -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base():
    return load_model(BASE_MODEL, device="cpu", dtype="float32")


@needs_shared
def test_real_speech_long_file_equals_generate_read_from_the_file(base):
    path = AUDIO_DIR / "long" / "cmu_arctic_prompts_cathy_a0001_to_a0045.wav"  # 160 s: 6 passes
    [expected] = generate_long_form(BASE_MODEL, [load_audio(path)], language="en", task="transcribe")
    got = base.transcribe(path, language="en", long_form="sequential", return_timestamps=True)  # a stream, read whole
    assert_equal(got, expected)
    assert not got.truncated and len(got.segments) > 30


@needs_shared
def test_real_speech_concatenations_batched_equal_generate(base):
    samples = [concatenation(short_files(seed, 6), seed) for seed in (1, 2)]
    assert all(len(s) > 30 * SAMPLE_RATE for s in samples) and len(samples[0]) != len(samples[1])
    expected = generate_long_form(BASE_MODEL, samples, language="en", task="transcribe")
    got = base.transcribe(samples, language="en", long_form="sequential", return_timestamps=True, batch_size=2)
    for result, oracle in zip(got, expected):
        assert_equal(result, oracle)


@needs_shared
def test_without_a_language_it_is_detected_from_the_first_window(base):
    samples = concatenation(short_files(3, 5), 3)
    [expected] = generate_long_form(BASE_MODEL, [samples], task="transcribe")
    got = base.transcribe(samples, long_form="sequential", return_timestamps=True)
    assert_equal(got, expected)
    assert got.language == "en"


def test_minutes_of_silence_are_empty(timestamps_checkpoint):
    """Each pass more likely silence than the threshold keeps nothing: openai/whisper's skip of a silent window."""
    model = load_model(timestamps_checkpoint, device="cpu", dtype="float32")
    got = model.transcribe(np.zeros(75 * SAMPLE_RATE, np.float32), no_speech_threshold=0.0, long_form="sequential",
                           return_timestamps=True, max_new_tokens=12)  # fmt: skip
    assert (got.text, got.tokens, got.segments) == ("", [], [])


# --- options ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["Sequential", "stitched", None, 1])
def test_an_unknown_long_form_is_a_clear_error(base, value):
    with pytest.raises(DistilWhisperError, match="long_form must be one of chunked, sequential"):
        base.transcribe(np.zeros(SAMPLE_RATE, np.float32), long_form=value)


def test_word_timestamps_need_the_chunked_long_form(base):
    with pytest.raises(DistilWhisperError, match="word_timestamps needs long_form='chunked'"):
        base.transcribe(np.zeros(SAMPLE_RATE, np.float32), long_form="sequential", word_timestamps=True)


def test_cli_long_form_sequential_equals_the_api(timestamps_checkpoint, tmp_path, capsys):
    import wave

    samples = synthetic_speech(35 * SAMPLE_RATE, seed=9)
    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(SAMPLE_RATE)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    assert main([str(path), "--model", str(timestamps_checkpoint), "--device", "cpu", "--language", "en",
                 "--max-new-tokens", "12", "--long-form", "sequential"]) == 0  # fmt: skip
    expected = load_model(timestamps_checkpoint, device="cpu").transcribe(path, language="en", max_new_tokens=12, long_form="sequential")
    assert capsys.readouterr().out.strip() == expected.text.strip()
    with pytest.raises(SystemExit):
        main([str(path), "--model", str(timestamps_checkpoint), "--long-form", "stitched"])
