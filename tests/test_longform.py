"""Long-form transcription against its oracle, the transformers ASR pipeline's chunked algorithm:

- chunk geometry against the pipeline's own `preprocess` (its stride default and rounding, then `chunk_iter`);
- stitching against the Whisper tokenizer's `_find_longest_common_sequence` and `_decode_asr`, on hand-made tokens;
- whole transcripts against `pipeline(..., chunk_length_s=15, batch_size=4)`: random-weight checkpoints on
  synthetic audio (fast, always run where whisper-base's tokenizer is), whisper-base on real speech.

The pipeline is always called greedy (`num_beams=1`): without it, it adds its own default of 5 beams.
"""

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import AUDIO_DIR, BASE_MODEL, GREEDY, SOT, needs_shared, pipeline_ready
from distilwhisper import DistilWhisperError, TranscribeOptions, load_model
from distilwhisper.audio import SAMPLE_RATE
from distilwhisper.longform import Chunk, chunk_audio, chunk_count, stitch

LONG_FILES = ["cmu_arctic_prompts_cathy_a0001_to_a0045.wav", "ljspeech_LJ001-0009_to_LJ001-0032.wav"]  # 160 s, 183 s


def asr_pipeline(model_dir, batch_size=4):
    from transformers import pipeline

    return pipeline("automatic-speech-recognition", model=str(model_dir), chunk_length_s=15, batch_size=batch_size,
                    device="cpu", dtype=torch.float32)  # fmt: skip


# --- chunk geometry -----------------------------------------------------------------------------------------

# With 15 s chunks: 240000 samples, a 40000-sample stride each side, a new chunk every 160000 samples.
LENGTHS = {
    "one sample": 1,
    "shorter than a chunk": 10 * SAMPLE_RATE,
    "exactly one chunk": 240000,
    "just over one chunk": 240000 + 160,
    "last piece shorter than a stride": 400000 + 16000,  # the 2nd chunk ends at 400000; 1 s of new audio after it
    "exactly three steps (30 s)": 3 * 160000,
    "30.01 s": 480160,
    "last chunk ends exactly at the end (35 s)": 2 * 160000 + 240000,
    "35 s and one sample": 560001,
    "last piece shorter than a stride (35.5 s)": 560000 + 8000,
    "exactly four steps (40 s)": 4 * 160000,
    "183 s": 2926701,
}


def pipeline_chunks(n_samples: int, chunk_length_s: float, stride_length_s: float | None) -> list[Chunk]:
    """The oracle: the pipeline's own preprocess (stride default, rounding to samples) and its chunk_iter,
    with a stand-in feature extractor that hands back each chunk's samples so we can read where it starts."""
    from transformers.pipelines.automatic_speech_recognition import AutomaticSpeechRecognitionPipeline

    class Samples:
        sampling_rate = SAMPLE_RATE

        def __call__(self, chunk, **kwargs):
            return {"samples": chunk}

    # Whisper's pipeline: no `inputs_to_logits_ratio` in its config, so chunks align to single samples.
    pipe = SimpleNamespace(feature_extractor=Samples(), _align_to=1, dtype=None, type="seq2seq_whisper")
    items = AutomaticSpeechRecognitionPipeline.preprocess(pipe, np.arange(n_samples), chunk_length_s, stride_length_s)
    chunks = []
    for item in items:
        length, left, right = item["stride"]
        start = int(item["samples"][0])
        chunks.append(Chunk(start, start + length, left, right))
    return chunks


@pytest.mark.parametrize("n_samples", LENGTHS.values(), ids=LENGTHS.keys())
def test_chunks_are_where_the_pipeline_puts_them(n_samples):
    assert chunk_audio(n_samples) == pipeline_chunks(n_samples, 15, None)


def test_each_chunks_features_equal_the_pipelines():
    """The pipeline's feature extractor zero-pads each chunk to 30 s and takes the log-mel of the padded window;
    so do we (pad_or_trim, then log_mel_spectrogram). Tolerance as in test_audio (float32 vs its float64 path)."""
    from transformers import WhisperFeatureExtractor
    from transformers.pipelines.automatic_speech_recognition import AutomaticSpeechRecognitionPipeline

    from distilwhisper.audio import log_mel_spectrogram, pad_or_trim

    samples = synthetic_speech(LENGTHS["last piece shorter than a stride (35.5 s)"], 9)
    pipe = SimpleNamespace(feature_extractor=WhisperFeatureExtractor(), _align_to=1, dtype=torch.float32, type="seq2seq_whisper")
    expected = [item["input_features"][0] for item in AutomaticSpeechRecognitionPipeline.preprocess(pipe, samples, 15)]
    chunks = chunk_audio(len(samples))
    assert len(expected) == len(chunks) == 4
    for chunk, features in zip(chunks, expected):
        ours = log_mel_spectrogram(pad_or_trim(torch.from_numpy(samples[chunk.start : chunk.stop])))
        assert (ours - features).abs().max().item() < 1e-4


@pytest.mark.parametrize("chunk_length, stride_length", [(30, None), (7.3, None), (10, 0), (12.5, 3.3)])
@pytest.mark.parametrize("n_samples", [LENGTHS["30.01 s"], LENGTHS["183 s"]], ids=["30.01 s", "183 s"])
def test_other_chunk_and_stride_lengths_round_as_the_pipeline_does(n_samples, chunk_length, stride_length):
    assert chunk_audio(n_samples, chunk_length, stride_length) == pipeline_chunks(n_samples, chunk_length, stride_length)


def test_chunks_cover_the_audio_and_overlap_by_two_strides():
    chunks = chunk_audio(LENGTHS["183 s"])
    assert chunks[0].start == 0 and chunks[-1].stop == LENGTHS["183 s"]
    for before, after in zip(chunks, chunks[1:]):
        assert before.stop - after.start == before.right + after.left == 2 * 40000


@pytest.mark.parametrize("chunk_length", [0, -1, 0.001, 0.99, 30.5, 60, float("nan"), float("inf"), "15", None])
def test_chunk_length_outside_one_to_thirty_seconds_is_a_clear_error(chunk_length):
    """Above 30 s a chunk would not fit the encoder's window; below a second each chunk, a whole window's work for
    less than a word, makes a decode endless (a 1-sample chunk: hours for a minute of audio)."""
    with pytest.raises(DistilWhisperError, match="chunk_length must be between 1 and 30"):
        chunk_audio(LENGTHS["183 s"], chunk_length)


@pytest.mark.parametrize("chunk_length", [1, 7.3, 15, 30])
@pytest.mark.parametrize("name", sorted(LENGTHS))
def test_chunk_count_is_the_number_of_chunks(name, chunk_length):
    assert chunk_count(LENGTHS[name], chunk_length) == len(chunk_audio(LENGTHS[name], chunk_length))



def test_a_stride_that_fills_the_chunk_is_a_clear_error():
    with pytest.raises(DistilWhisperError, match="must leave room"):
        chunk_audio(LENGTHS["183 s"], 10, 5)


# --- stitching ----------------------------------------------------------------------------------------------


def whisper_tokenizer():
    from transformers import WhisperTokenizer

    if not (BASE_MODEL / "vocab.json").exists():
        pytest.skip(f"whisper-base's tokenizer not found at {BASE_MODEL}")
    return WhisperTokenizer.from_pretrained(BASE_MODEL)


def oracle_merge(sequences: list[list[int]]) -> list[int]:
    """transformers' merge of the chunks' text tokens, as _decode_asr calls it: empty chunks left out, and
    not called at all when every chunk is empty."""
    from transformers.models.whisper.tokenization_whisper import _find_longest_common_sequence

    pieces = [s for s in sequences if s]
    return _find_longest_common_sequence(pieces) if pieces else []


# Text token ids (< 50257): what stitching sees; the letters in the names say which tokens repeat.
STITCH_CASES = {
    "no overlap: joined whole": [[1, 2, 3, 4], [5, 6, 7, 8]],
    "one token in common is not enough": [[1, 2, 3, 4], [4, 5, 6]],
    "two-token overlap": [[1, 2, 3, 4, 5], [4, 5, 6, 7]],
    "full overlap: same tokens": [[1, 2, 3, 4], [1, 2, 3, 4]],
    "next chunk inside the tail": [[1, 2, 3, 4, 5, 6], [3, 4, 5]],
    "tail inside the next chunk": [[3, 4], [1, 2, 3, 4, 5, 6]],
    "overlap with a disagreement": [[1, 2, 3, 4, 5, 6], [3, 9, 5, 6, 7, 8]],
    "repeated tokens: aaaa then aaab": [[7, 7, 7, 7], [7, 7, 7, 8]],
    "repeated pattern: abab": [[1, 2, 1, 2, 1, 2], [1, 2, 1, 2, 3]],
    "a chunk that decoded to nothing": [[1, 2, 3, 4], [], [3, 4, 5, 6]],
    "only empty chunks": [[], [], []],
    "first chunk empty": [[], [1, 2, 3], [2, 3, 4]],
    "three chunks chained": [[1, 2, 3, 4, 5], [4, 5, 6, 7, 8], [7, 8, 9, 10]],
    "single chunk": [[5, 6, 7]],
    "longer, misaligned by one token": [list(range(100, 140)), list(range(121, 160))],
}


def test_stitch_walks_through_its_docstring_example():
    a, b, c, d, e, f, g = range(10, 17)
    assert stitch([[a, b, c, d, e], [d, e, f, g]]) == [a, b, c, d, e, f, g]


@pytest.mark.parametrize("sequences", STITCH_CASES.values(), ids=STITCH_CASES.keys())
def test_stitch_equals_the_tokenizers_merge(sequences):
    assert stitch(sequences) == oracle_merge(sequences)


def test_stitch_expected_values():
    """The oracle's answers written out, so the cases above cannot both be wrong the same way."""
    merged = {name: stitch(seqs) for name, seqs in STITCH_CASES.items()}
    assert merged["no overlap: joined whole"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert merged["one token in common is not enough"] == [1, 2, 3, 4, 4, 5, 6]
    assert merged["two-token overlap"] == [1, 2, 3, 4, 5, 6, 7]
    assert merged["full overlap: same tokens"] == [1, 2, 3, 4]
    assert merged["overlap with a disagreement"] == [1, 2, 3, 4, 5, 6, 7, 8]  # the tail's 4 wins in its half
    assert merged["a chunk that decoded to nothing"] == [1, 2, 3, 4, 5, 6]
    assert merged["only empty chunks"] == []


def test_stitch_on_random_token_streams_equals_the_tokenizers_merge():
    """Chunks cut from one stream with overlaps, then garbled a little: where stitching has choices to make."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        stream = rng.integers(0, 6, 60).tolist()  # a small alphabet: many repeats, many near-ties
        starts = sorted(rng.choice(50, 3, replace=False).tolist())
        sequences = [stream[s : s + int(rng.integers(0, 25))] for s in starts]
        for seq in sequences:
            for i in rng.choice(len(seq), min(len(seq), 2), replace=False) if seq else []:
                seq[i] = int(rng.integers(0, 6))
        assert stitch(sequences) == oracle_merge(sequences), sequences


@pytest.mark.parametrize("name", ["two-token overlap", "a chunk that decoded to nothing", "repeated tokens: aaaa then aaab"])
def test_stitch_text_equals_the_tokenizers_decode_asr(name):
    """The whole of _decode_asr without timestamps: each chunk's output as generate() returns it (end token,
    padding), its stride in seconds, decoded to text."""
    tokenizer = whisper_tokenizer()
    sequences = [[t + 400 for t in seq] for seq in STITCH_CASES[name]]  # ordinary word pieces
    outputs = [
        {"tokens": torch.tensor([seq + [50257, 50257]]), "stride": (15.0, 0.0 if i == 0 else 2.5, 2.5)}
        for i, seq in enumerate(sequences)
    ]
    expected, _ = tokenizer._decode_asr(outputs, return_timestamps=None, return_language=None, time_precision=0.02)
    assert tokenizer.decode(stitch(sequences)) == expected


# --- whole transcripts: random weights, synthetic audio --------------------------------------------------------

RANDOM_LENGTHS = ["just over one chunk", "last piece shorter than a stride", "30.01 s", "35 s and one sample",
                  "last piece shorter than a stride (35.5 s)", "exactly four steps (40 s)"]  # fmt: skip


@pytest.fixture(scope="module", params=["tiny-4x4", "distil-2dec"])
def pipeline_checkpoint(request, random_checkpoint, tmp_path_factory):
    """A random checkpoint the pipeline can load too: whisper-base's tokenizer and feature extractor (80 mels).

    Its suppress_tokens also hold every special token but the end token, and every timestamp: random weights
    emit them, a real model after <|notimestamps|> does not. The pipeline would keep them (as text, or as
    timestamps that split its merge); we keep only text tokens. Both sides read the same suppress list.
    """
    made = random_checkpoint(7, request.param, tokenizer="base")
    return pipeline_ready(Path(shutil.copytree(made, tmp_path_factory.mktemp("pipeline") / request.param)), range(SOT, 51865))


def synthetic_speech(n_samples: int, seed: int) -> np.ndarray:
    """Noise whose loudness and colour change every half second: each chunk hears something different."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(n_samples).astype(np.float32)
    envelope = np.repeat(rng.uniform(0.01, 0.5, n_samples // 8000 + 1), 8000)[:n_samples].astype(np.float32)
    return np.convolve(noise, np.ones(4, np.float32) / 4, mode="same") * envelope


@pytest.mark.parametrize("length", RANDOM_LENGTHS)
def test_random_weights_text_equals_the_pipeline(pipeline_checkpoint, length):
    samples = synthetic_speech(LENGTHS[length], seed=len(length))
    expected = asr_pipeline(pipeline_checkpoint)(
        {"raw": samples, "sampling_rate": SAMPLE_RATE}, generate_kwargs={**GREEDY, "max_new_tokens": 20})["text"]
    model = load_model(pipeline_checkpoint, device="cpu", dtype="float32")
    if len(samples) > 30 * SAMPLE_RATE:  # the public API chunks only what does not fit one window
        got = model.transcribe(samples, language="en", max_new_tokens=20, batch_size=4, no_speech_threshold=None)
    else:  # the algorithm itself takes any length
        plan = model.plan(TranscribeOptions("en", "transcribe", 20, no_speech_threshold=None))
        got = model.transcribe_long(torch.from_numpy(samples), plan, batch_size=4, chunk_length=15)
    assert got.text == expected


def test_without_a_language_each_chunk_is_detected_as_the_pipeline_does(pipeline_checkpoint, monkeypatch):
    """The pipeline calls generate() on each batch of chunks, and generate() detects every input of a batch:
    chunks are decoded in their own languages, not in one per file. 40 s of noise, a tone and clicks, which
    random weights hear as different languages: the text equals the pipeline's (default language), and the
    result reports the language most chunks were decoded in."""
    rng, seconds = np.random.default_rng(8), np.arange(40 * SAMPLE_RATE) / SAMPLE_RATE
    samples = np.select([seconds < 12.5, seconds < 27.5],
                        [rng.standard_normal(len(seconds)) * 0.1, np.sin(2 * np.pi * 200 * seconds) * 0.3],
                        (rng.random(len(seconds)) < 0.001) * 0.9).astype(np.float32)  # fmt: skip
    expected = asr_pipeline(pipeline_checkpoint)(
        {"raw": samples, "sampling_rate": SAMPLE_RATE}, generate_kwargs={"num_beams": 1, "max_new_tokens": 20, "task": "transcribe"})["text"]

    model = load_model(pipeline_checkpoint, device="cpu")
    chunk_languages, real_decode = [], model.decode
    monkeypatch.setattr(model, "decode", lambda *args: [chunk_languages.append(w.language) or w for w in real_decode(*args)])
    got = model.transcribe(samples, max_new_tokens=20, batch_size=4, no_speech_threshold=None)
    assert got.text == expected
    assert len(chunk_languages) == 4 and len(set(chunk_languages)) > 1
    assert got.language == max(chunk_languages, key=chunk_languages.count)


def test_chunks_are_decoded_batch_size_at_a_time_and_truncated_when_any_chunk_was(pipeline_checkpoint, monkeypatch):
    """40 s is 4 chunks: decoded 3 then 1. When one chunk (only) ran out of max_new_tokens, the result is truncated."""
    from dataclasses import replace

    model = load_model(pipeline_checkpoint, device="cpu", dtype="float32")
    real_decode = model.decode
    for cut in (None, 2):
        batches = []

        def decode(waveforms, plan, lengths=None):
            decoded = real_decode(waveforms, plan, lengths)  # only chunk `cut` reports running out
            decoded = [replace(w, truncated=sum(batches) + i == cut) for i, w in enumerate(decoded)]
            batches.append(len(decoded))
            return decoded

        monkeypatch.setattr(model, "decode", decode)
        result = model.transcribe(synthetic_speech(LENGTHS["exactly four steps (40 s)"], 1), max_new_tokens=3,
                                  batch_size=3, no_speech_threshold=None)  # fmt: skip
        assert (batches, result.truncated) == ([3, 1], cut is not None)


def test_a_list_mixes_long_and_short_inputs_in_order(pipeline_checkpoint):
    """Long inputs are chunked in their place in the list; the short ones are decoded as before."""
    model = load_model(pipeline_checkpoint, device="cpu", dtype="float32")
    short, long = synthetic_speech(12 * SAMPLE_RATE, 1), synthetic_speech(LENGTHS["30.01 s"], 2)
    options = dict(max_new_tokens=8, no_speech_threshold=None)
    alone = [model.transcribe(a, **options).text for a in (short, long, short)]
    assert [r.text for r in model.transcribe([short, long, short], batch_size=2, **options)] == alone


def test_chunk_length_changes_only_long_inputs(pipeline_checkpoint):
    model = load_model(pipeline_checkpoint, device="cpu", dtype="float32")
    short, long = synthetic_speech(20 * SAMPLE_RATE, 3), synthetic_speech(LENGTHS["30.01 s"], 4)
    options = dict(max_new_tokens=8, no_speech_threshold=None)
    assert model.transcribe(short, chunk_length=10, **options) == model.transcribe(short, **options)
    assert model.transcribe(long, chunk_length=10, **options).text != model.transcribe(long, **options).text
    with pytest.raises(DistilWhisperError, match="chunk_length must be"):
        model.transcribe(short, chunk_length=31)


def test_cli_transcribes_a_long_file_as_the_api_does(pipeline_checkpoint, tmp_path, capsys):
    import wave

    from distilwhisper.cli import main

    samples = synthetic_speech(LENGTHS["35 s and one sample"], 5)
    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(SAMPLE_RATE)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    expected = load_model(pipeline_checkpoint, device="cpu").transcribe(path, max_new_tokens=8, chunk_length=12, batch_size=3)
    assert main([str(path), "--model", str(pipeline_checkpoint), "--max-new-tokens", "8", "--chunk-length", "12",
                 "--batch-size", "3"]) == 0  # fmt: skip
    assert capsys.readouterr().out == expected.text.strip() + "\n"


@pytest.mark.parametrize("chunk_length", ["45", "nan", "inf", "0.001"])
def test_cli_refuses_a_bad_chunk_length(chunk_length, capsys):
    from distilwhisper.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["x.wav", "--chunk-length", chunk_length])
    assert exit_.value.code == 2 and "--chunk-length must be between 1 and 30" in capsys.readouterr().err


# --- whole transcripts: whisper-base, real speech --------------------------------------------------------------

# The ljspeech file whole (183 s, 18 chunks), text without timestamps. The cmu file (160 s) is read whole with
# timestamps in test_timestamps.py (text and segments equal to the pipeline) and sequentially in test_sequential.py.


@pytest.fixture(scope="module")
def base_models():
    return load_model(BASE_MODEL, device="cpu", dtype="float32"), asr_pipeline(BASE_MODEL)


@needs_shared
@pytest.mark.parametrize("name", [name for name in LONG_FILES if name.startswith("ljspeech")])
def test_real_speech_text_equals_the_pipeline(base_models, name):
    from distilwhisper.audio import load_audio

    ours, pipe = base_models
    samples = load_audio(AUDIO_DIR / "long" / name)
    expected = pipe({"raw": samples, "sampling_rate": SAMPLE_RATE}, generate_kwargs={**GREEDY, "max_new_tokens": 128})
    got = ours.transcribe(samples, language="en", max_new_tokens=128, batch_size=4)
    assert got.text == expected["text"]
    assert not got.truncated
