"""Timestamps against their oracles in transformers:

- `TimestampRules` against WhisperTimeStampLogitsProcessor, on random logits and on hand-made histories;
- decoding with timestamps against WhisperForConditionalGeneration.generate(return_timestamps=True), which
  decodes a window in passes (random-weight tiny configs);
- `stitch_with_timestamps` against the Whisper tokenizer's `_decode_asr(return_timestamps=True)` on hand-made
  chunk outputs;
- segments against the ASR pipeline's `chunks` with return_timestamps=True: short-form (no chunk_length_s) and
  chunked (chunk_length_s=15, batch_size=4), random weights on synthetic audio, whisper-base on real speech.

The pipeline is always called greedy (`num_beams=1`).
"""

import json
import shutil
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import (AUDIO_DIR, BASE_MODEL, EOT, GREEDY, NO_SPEECH, NO_TIMESTAMPS, T0, TINY_CONFIGS, checkpoint_rules,
                     needs_shared, pipeline_ready, tokens_of, window_passes)  # fmt: skip
from distilwhisper import Segment, TranscribeOptions, load_model
from distilwhisper.audio import SAMPLE_RATE
from distilwhisper.decoding import Decoding, TimestampRules, finished_segments
from distilwhisper.longform import Chunk, Span, chunk_audio, stitch_with_timestamps
from distilwhisper.weights import load_whisper
from distilwhisper.windows import Engine
from test_longform import LENGTHS, LONG_FILES, asr_pipeline, synthetic_speech, whisper_tokenizer

VOCAB = 51865
PROMPT = [50258, 50259, 50359]  # <|startoftranscript|><|en|><|transcribe|>: no <|notimestamps|>
TEXT = 50257  # text tokens lie below it


def ts(seconds: float) -> int:
    return T0 + round(seconds / 0.02)


# --- the logit rule ------------------------------------------------------------------------------------------


def oracle_rules(logits: torch.Tensor, generated: torch.Tensor, max_initial_timestamp_index: int | None) -> torch.Tensor:
    """WhisperTimeStampLogitsProcessor as generate() builds it: begin_index = the prompt's length."""
    from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor

    config = SimpleNamespace(no_timestamps_token_id=NO_TIMESTAMPS, eos_token_id=EOT, bos_token_id=EOT,
                             max_initial_timestamp_index=max_initial_timestamp_index)  # fmt: skip
    processor = WhisperTimeStampLogitsProcessor(config, begin_index=len(PROMPT))
    input_ids = torch.cat([torch.tensor([PROMPT] * len(generated)), generated], dim=1)
    return processor(input_ids, logits.clone())


def ours(logits: torch.Tensor, generated: torch.Tensor, max_initial_timestamp_index: int | None) -> torch.Tensor:
    logits = logits.clone()
    TimestampRules(EOT, NO_TIMESTAMPS, max_initial_timestamp_index).apply(logits, generated)
    return logits


def random_logits(batch: int, seed: int, timestamp_boost: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, VOCAB, generator=generator) * 4
    logits[:, T0:] += timestamp_boost
    return logits


@pytest.mark.parametrize("max_initial", [None, 0, 50])
def test_rules_equal_the_processor_on_random_histories(max_initial):
    """Histories of text, timestamps and other special tokens in any order, one state per row of the batch;
    logits where text wins, where timestamps win together, and in between."""
    rng = np.random.default_rng(max_initial or 7)
    for trial in range(60):
        step, batch = int(rng.choice([0, 1, 2, 3, 6, 12])), 5
        kinds = rng.random((batch, step))
        text = rng.integers(0, EOT, (batch, step))
        timestamps = rng.integers(T0, VOCAB, (batch, step))
        specials = rng.integers(EOT, T0, (batch, step))
        generated = torch.from_numpy(np.where(kinds < 0.45, text, np.where(kinds < 0.95, timestamps, specials)))
        logits = random_logits(batch, trial, timestamp_boost=float(rng.choice([0, 6, 9, 12])))
        assert torch.equal(ours(logits, generated, max_initial), oracle_rules(logits, generated, max_initial))


# Hand-made histories, one per branch of the processor; what each allows next is written out too.
A, B = 1000, 2000  # text tokens
HISTORIES = {
    "first step: a timestamp, within the initial limit": ([], "first"),
    "after the first timestamp: text (it counts as a pair)": ([ts(0.4)], "text"),
    "after a pair: text, no timestamp": ([ts(0), A, ts(1.0), ts(1.5)], "text"),
    "after text and one timestamp: its partner, no text": ([ts(0), A, ts(1.0)], "partner"),
    "after text: a timestamp later than the last": ([ts(0), A, ts(1.0), ts(1.2), B], "later"),
    "after a pair of equal timestamps: text": ([ts(0), A, ts(1.0), ts(1.0)], "text"),
    "text with no timestamp yet: any timestamp": ([A, B], "any"),
    "a special token is not a timestamp": ([ts(0), A, ts(2.0), EOT + 5], "later"),
}


@pytest.mark.parametrize("name", HISTORIES, ids=HISTORIES.keys())
@pytest.mark.parametrize("max_initial", [None, 50])
def test_rules_equal_the_processor_on_each_branch(name, max_initial):
    history, allowed = HISTORIES[name]
    generated = torch.tensor([history], dtype=torch.long).reshape(1, len(history))
    for boost in (0.0, 12.0):  # text wins / timestamps win together
        logits = random_logits(1, len(history), boost)
        got = ours(logits, generated, max_initial)
        assert torch.equal(got, oracle_rules(logits, generated, max_initial))
        finite = torch.isfinite(got[0])
        assert not finite[NO_TIMESTAMPS]
        last = max([t for t in history if t >= T0], default=None)
        if allowed == "first":
            assert not finite[:T0].any() and finite[T0] and finite[T0 + 50].item()
            assert finite[T0 + 51].item() == (max_initial is None)
        elif allowed == "text":
            assert not finite[T0:].any() and finite[EOT]
        elif allowed == "partner":
            assert not finite[:EOT].any() and finite[last] and not finite[last - 1]
        elif allowed in ("later", "any"):
            lowest = T0 if last is None else last + 1
            assert not finite[T0:lowest].any() and finite[lowest:].all()
            assert finite[:EOT].any().item() == (boost == 0.0)  # the timestamps' total beats every text token


def test_rules_keep_each_rows_state_in_a_batch():
    rows = [[ts(0), A, ts(1.0)], [ts(0), A, B], [ts(0), ts(0.5), A]]
    generated = torch.tensor(rows)
    logits = random_logits(3, 1)
    got = ours(logits, generated, 50)
    assert torch.equal(got, oracle_rules(logits, generated, 50))
    assert not torch.isfinite(got[0, :EOT]).any() and torch.isfinite(got[1, :EOT]).any()


# --- decoding in passes, against generate(return_timestamps=True) ---------------------------------------------


def test_finished_segments_cut_where_generate_does():
    assert finished_segments([ts(0), A, ts(2), ts(2), B], T0) == ([ts(0), A, ts(2), ts(2)], 100)
    assert finished_segments([ts(0), A, ts(2), ts(2), B, ts(3)], T0) == ([ts(0), A, ts(2), ts(2), B, ts(3)], None)
    assert finished_segments([ts(0), A, B], T0) == ([ts(0), A, B], None)
    assert finished_segments([ts(0), A, ts(2), ts(2.5)], T0) == ([ts(0), A, ts(2), ts(2.5)], 100)
    assert finished_segments([], T0) == ([], None)


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def tiny_checkpoint(request, random_checkpoint):
    from transformers import WhisperForConditionalGeneration

    path = random_checkpoint(3, request.param)
    return path, WhisperForConditionalGeneration.from_pretrained(path).eval(), load_whisper(path)


@pytest.mark.parametrize("max_initial", [None, 50])
def test_generated_tokens_equal_generate_with_timestamps(tiny_checkpoint, max_initial):
    """Random weights stop mid-segment often, so generate decodes the rest of the window again: the tokens
    of every pass, one after the other, are what it returns (eot and padding stripped)."""
    path, oracle, model = tiny_checkpoint
    oracle.generation_config.max_initial_timestamp_index = max_initial
    mel = torch.randn(3, model.dims.n_mels, 3000, generator=torch.Generator().manual_seed(5))
    expected = oracle.generate(mel, language="en", task="transcribe", return_timestamps=True, max_new_tokens=40,
                               do_sample=False, num_beams=1).tolist()  # fmt: skip
    decoding = Decoding(EOT, 40, (*checkpoint_rules(path), TimestampRules(EOT, NO_TIMESTAMPS, max_initial)), NO_SPEECH)
    engine, prompts = Engine.eager(model), [PROMPT] * len(mel)
    engine.prepare(mel)
    first = engine.decode(prompts, decoding)
    got = tokens_of(window_passes(partial(engine.decode, decoding=decoding), engine.prepare, mel, first, prompts, T0))
    for row, tokens in zip(expected, got):
        while row and row[-1] == EOT:
            row.pop()
        assert tokens == row
    several_passes = [any(b < a for a, b in zip(t, t[1:]) if a >= T0 and b >= T0) for t in got]
    assert any(several_passes) or max_initial == 50  # the later passes' timestamps start again from 0


# --- the merge, against _decode_asr --------------------------------------------------------------------------


def oracle_segments(tokenizer, pieces: list[tuple[list[int], Chunk]], audio_end: float) -> list[tuple]:
    """_decode_asr on chunk outputs as the pipeline hands them over (eot and padding after the tokens, strides in
    seconds); an end it leaves None is the end of the audio (or the start, if later), a start it leaves None
    the previous segment's end: our documented choices."""
    outputs = [
        {"tokens": torch.tensor([tokens + [EOT, EOT]]),
         "stride": ((c.stop - c.start) / SAMPLE_RATE, c.left / SAMPLE_RATE, c.right / SAMPLE_RATE)}
        for tokens, c in pieces
    ]  # fmt: skip
    _, optional = tokenizer._decode_asr(outputs, return_timestamps=True, return_language=None, time_precision=30 / 1500)
    segments = []
    for chunk in optional["chunks"]:
        start, end = chunk["timestamp"]
        start = start if start is not None else segments[-1][1] if segments else 0.0
        segments.append((start, end if end is not None else max(start, audio_end), chunk["text"]))
    return segments


def our_segments(tokenizer, pieces, audio_end):
    spans = stitch_with_timestamps(pieces, T0, EOT, audio_end)
    return [(s.start, s.end, tokenizer.decode(s.tokens)) for s in spans]


def words(*names: str) -> list[int]:
    return [400 + ord(n) for n in names]  # ordinary word pieces, one per letter


C25 = chunk_audio(25 * SAMPLE_RATE)  # [0, 15) right 2.5 s; [10, 25) left 2.5 s
C40 = chunk_audio(40 * SAMPLE_RATE)  # four chunks
MERGE_CASES = {
    "the docstring's example": [
        ([ts(0), *words("A", "B"), ts(6), ts(6), *words("C", "D"), ts(13), ts(13), *words("E"), ts(14.8)], C25[0]),
        ([ts(0), *words("D", "E", "F"), ts(5), ts(5), *words("G"), ts(14)], C25[1])],
    "timestamps on both sides of the seam": [
        ([ts(0), *words("A"), ts(4), ts(4), *words("B", "C"), ts(11), ts(11), *words("D", "E"), ts(13.5)], C25[0]),
        ([ts(0.5), *words("D", "E"), ts(3.5), ts(3.5), *words("F"), ts(9)], C25[1])],
    "a segment across the seam, no timestamp in the strides": [
        ([ts(0), *words("A", "B"), ts(9), ts(9), *words("C", "D", "E")], C25[0]),
        ([ts(1), *words("D", "E", "F"), ts(8)], C25[1])],
    "a chunk that decoded to nothing": [
        ([ts(0), *words("A", "B"), ts(5), ts(5), *words("C")], C40[0]),
        ([], C40[1]),
        ([ts(3), *words("X", "Y"), ts(7)], C40[2]),
        ([ts(0), *words("Y", "Z"), ts(9)], C40[3])],
    "a chunk of timestamps only forgets the segment it opened": [
        ([ts(0), *words("A"), ts(3), ts(3), *words("B"), ts(6)], C25[0]),
        ([ts(4), ts(6)], C25[1])],
    "a repeated timestamp does not close an empty segment": [
        ([ts(1), ts(1), *words("A"), ts(2)], Chunk(0, 5 * SAMPLE_RATE, 0, 0))],
    "text left open at the end": [
        ([ts(0), *words("A"), ts(2), ts(2), *words("B", "C")], Chunk(0, 7 * SAMPLE_RATE, 0, 0))],
    "a later pass after a pair": [
        ([ts(0), *words("A"), ts(20), ts(20), ts(0), *words("B"), ts(5)], Chunk(0, 28 * SAMPLE_RATE, 0, 0))],
    "four chunks, segments everywhere": [
        ([ts(0), *words("A", "B"), ts(7), ts(7), *words("C", "D"), ts(12.7), ts(12.7), *words("E", "F"), ts(15)], C40[0]),
        ([ts(0), *words("D", "E", "F"), ts(4.9), ts(4.9), *words("G", "H"), ts(11), ts(11), *words("I"), ts(14)], C40[1]),
        ([ts(1), *words("H", "I"), ts(4), ts(4), *words("J"), ts(12.9), ts(12.9), *words("K"), ts(15)], C40[2]),
        ([ts(2), *words("K", "L"), ts(6), ts(6), *words("M"), ts(9.98)], C40[3])],
}


@pytest.mark.parametrize("name", MERGE_CASES, ids=MERGE_CASES.keys())
def test_stitch_with_timestamps_equals_decode_asr(name):
    tokenizer = whisper_tokenizer()
    pieces = MERGE_CASES[name]
    audio_end = pieces[-1][1].stop / SAMPLE_RATE
    assert our_segments(tokenizer, pieces, audio_end) == oracle_segments(tokenizer, pieces, audio_end)


def test_stitch_with_timestamps_walks_through_its_docstring_example():
    a, b, c, d, e, f, g = words("A", "B", "C", "D", "E", "F", "G")
    spans = stitch_with_timestamps(MERGE_CASES["the docstring's example"], T0, EOT, 25.0)
    assert [(s.start, s.end, s.tokens) for s in spans] == [(0.0, 6.0, [a, b]), (6.0, 15.0, [c, d, e, f]), (15.0, 24.0, [g])]


def test_a_segment_left_open_ends_at_the_end_of_the_audio():
    """The pipeline gives (2.0, None) here; ours ends at the audio's end, or at the start when that is later."""
    b, c = words("B", "C")
    pieces = MERGE_CASES["text left open at the end"]
    assert [(s.start, s.end) for s in stitch_with_timestamps(pieces, T0, EOT, 7.0)] == [(0.0, 2.0), (2.0, 7.0)]
    assert stitch_with_timestamps(pieces, T0, EOT, 7.0)[-1].tokens == [b, c]
    late = [([ts(9), *words("A")], Chunk(0, 7 * SAMPLE_RATE, 0, 0))]
    assert [(s.start, s.end) for s in stitch_with_timestamps(late, T0, EOT, 7.0)] == [(9.0, 9.0)]


def test_other_special_tokens_are_ignored():
    """The pipeline's tokenizer would keep <|zh|> as text; Whisper checkpoints suppress such tokens anyway."""
    pieces = [([ts(0), *words("A"), EOT + 3, ts(1)], Chunk(0, 2 * SAMPLE_RATE, 0, 0))]
    assert stitch_with_timestamps(pieces, T0, EOT, 2.0) == [Span(0.0, 1.0, words("A"))]


def test_stitch_with_timestamps_on_random_chunks_equals_decode_asr():
    """Well-formed chunk outputs (pairs, times that never go back, text between) at random: where the strides'
    skipping and the merges interact in ways no hand-made case thinks of."""
    tokenizer = whisper_tokenizer()
    rng = np.random.default_rng(0)
    for _ in range(150):
        chunks = chunk_audio(int(rng.integers(16, 60)) * SAMPLE_RATE)
        pieces = []
        for chunk in chunks:
            tokens, time, length = [], 0, (chunk.stop - chunk.start) // 320  # in 0.02 s steps
            while rng.random() < 0.85 and time < length:
                start = int(time + rng.integers(0, 30))
                end = int(start + rng.integers(1, 300))
                if end > 1500:
                    break
                tokens += [T0 + start, *rng.integers(400, 406, int(rng.integers(0, 5))).tolist(), T0 + end]
                time = end
            if tokens and rng.random() < 0.3:
                tokens += rng.integers(400, 406, 2).tolist()  # open at the end
            pieces.append((tokens, chunk))
        audio_end = chunks[-1].stop / SAMPLE_RATE
        assert our_segments(tokenizer, pieces, audio_end) == oracle_segments(tokenizer, pieces, audio_end), pieces


# --- whole transcripts: random weights, synthetic audio --------------------------------------------------------


@pytest.fixture(scope="module")
def timestamps_checkpoint(random_checkpoint, tmp_path_factory):
    """A random checkpoint the pipeline loads too, with timestamps free: every other special token but the end
    is suppressed (the pipeline's tokenizer would keep them as text; real checkpoints do not emit them)."""
    made = random_checkpoint(11, "distil-2dec", tokenizer="base")
    folder = Path(shutil.copytree(made, tmp_path_factory.mktemp("timestamps") / "model"))
    return pipeline_ready(folder, range(EOT + 1, T0), max_initial_timestamp_index=50)


def pipeline_segments(result: dict, audio_end: float) -> list[Segment]:
    """The pipeline's chunks as Segments; an end it leaves None is the end of the audio (our choice)."""
    segments = []
    for chunk in result["chunks"]:
        start, end = chunk["timestamp"]
        start = start if start is not None else segments[-1].end if segments else 0.0
        segments.append(Segment(start, end if end is not None else max(start, audio_end), chunk["text"]))
    return segments


@pytest.mark.parametrize("length", ["shorter than a chunk", "exactly three steps (30 s)"])
def test_short_form_segments_equal_the_pipelines(timestamps_checkpoint, length):
    """Up to 30 s, decoded whole: the pipeline without chunk_length_s."""
    from transformers import pipeline

    samples = synthetic_speech(LENGTHS[length], seed=len(length))
    pipe = pipeline("automatic-speech-recognition", model=str(timestamps_checkpoint), device="cpu", dtype=torch.float32)
    expected = pipe({"raw": samples, "sampling_rate": SAMPLE_RATE}, return_timestamps=True,
                    generate_kwargs={**GREEDY, "max_new_tokens": 12})  # fmt: skip
    got = load_model(timestamps_checkpoint, device="cpu").transcribe(samples, language="en", max_new_tokens=12,
                                                                 no_speech_threshold=None, return_timestamps=True)
    assert got.segments == pipeline_segments(expected, round(len(samples) / SAMPLE_RATE, 2)) and got.segments
    assert got.text == expected["text"]
    assert all(t < EOT for t in got.tokens)


@pytest.mark.parametrize("length", ["30.01 s", "just over one chunk", "exactly four steps (40 s)",
                                    "last piece shorter than a stride (35.5 s)"])  # fmt: skip
def test_long_form_segments_equal_the_pipelines(timestamps_checkpoint, length):
    samples = synthetic_speech(LENGTHS[length], seed=len(length) + 1)
    expected = asr_pipeline(timestamps_checkpoint)({"raw": samples, "sampling_rate": SAMPLE_RATE}, return_timestamps=True,
                                                generate_kwargs={**GREEDY, "max_new_tokens": 12})  # fmt: skip
    model = load_model(timestamps_checkpoint, device="cpu", dtype="float32")
    if len(samples) > 30 * SAMPLE_RATE:
        got = model.transcribe(samples, language="en", max_new_tokens=12, batch_size=4, no_speech_threshold=None,
                               return_timestamps=True)  # fmt: skip
    else:  # the algorithm itself takes any length
        plan = model.plan(TranscribeOptions("en", "transcribe", 12, no_speech_threshold=None, return_timestamps=True))
        got = model.transcribe_long(torch.from_numpy(samples), plan, batch_size=4, chunk_length=15)
    assert got.segments == pipeline_segments(expected, round(len(samples) / SAMPLE_RATE, 2)) and got.segments
    assert got.text == expected["text"]


def test_without_timestamps_there_are_no_segments_and_nothing_else_changes(timestamps_checkpoint):
    model = load_model(timestamps_checkpoint, device="cpu")
    samples = synthetic_speech(LENGTHS["shorter than a chunk"], 3)
    plain = model.transcribe(samples, max_new_tokens=10, no_speech_threshold=None)
    assert plain.segments == [] and plain.to_dict()["segments"] == []
    timed = model.transcribe(samples, max_new_tokens=10, no_speech_threshold=None, return_timestamps=True)
    assert timed.to_dict()["segments"] == [{"start": s.start, "end": s.end, "text": s.text} for s in timed.segments]


# --- whisper-base, real speech -----------------------------------------------------------------------------------


@needs_shared
def test_real_speech_short_segments_equal_the_pipeline(base_model):
    from transformers import pipeline

    from distilwhisper.audio import load_audio

    samples = load_audio(AUDIO_DIR / "short" / "jfk_inaugural_11s.wav")
    pipe = pipeline("automatic-speech-recognition", model=str(BASE_MODEL), device="cpu", dtype=torch.float32)
    expected = pipe({"raw": samples, "sampling_rate": SAMPLE_RATE}, return_timestamps=True, generate_kwargs=GREEDY)
    got = base_model.transcribe(samples, language="en", return_timestamps=True)
    assert got.segments == pipeline_segments(expected, round(len(samples) / SAMPLE_RATE, 2))
    assert got.text == expected["text"] and len(got.segments) >= 1


@pytest.fixture(scope="module", params=[name for name in LONG_FILES if name.startswith("cmu")])
def long_file_both_ways(request, base_model):
    """One decode of the cmu long file per side: ours and the pipeline's (chunk_length_s=15, batch_size=4). The other
    long file is test_longform's (its text without timestamps): two minutes of CI each, so one test per file."""
    from distilwhisper.audio import load_audio

    samples = load_audio(AUDIO_DIR / "long" / request.param)
    expected = asr_pipeline(BASE_MODEL)({"raw": samples, "sampling_rate": SAMPLE_RATE}, return_timestamps=True,
                                        generate_kwargs={**GREEDY, "max_new_tokens": 128})  # fmt: skip
    got = base_model.transcribe(samples, language="en", max_new_tokens=128, batch_size=4, return_timestamps=True)
    return samples, expected, got


@needs_shared
def test_real_speech_long_segments_and_text_equal_the_pipeline(long_file_both_ways):
    samples, expected, got = long_file_both_ways
    assert got.segments == pipeline_segments(expected, round(len(samples) / SAMPLE_RATE, 2))
    assert got.text == expected["text"]
    assert len(got.segments) > 10 and not got.truncated


# --- the command line ------------------------------------------------------------------------------------------

HAND_MADE = Segment(0.0, 2.5, " Hello there."), Segment(2.5, 2.5, ""), Segment(3.0, 3661.24, " General Kenobi!")


def hand_made_result():
    from distilwhisper import Transcription

    return Transcription(" Hello there. General Kenobi!", [1, 2], "en", -0.1, 0.01, False, segments=list(HAND_MADE))


def test_srt_vtt_and_timed_txt():
    """SubRip numbers its cues and writes milliseconds after a comma; WebVTT has a header and a full stop; a
    segment without text has no cue. txt with --timestamps is one line per segment."""
    from distilwhisper.cli import render

    result = hand_made_result()
    assert render(result, "a.wav", "srt") == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n2\n00:00:03,000 --> 01:01:01,240\nGeneral Kenobi!"
    )
    assert render(result, "a.wav", "vtt") == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n\n00:00:03.000 --> 01:01:01.240\nGeneral Kenobi!"
    )
    assert render(result, "a.wav", "txt", timestamps=True) == (
        "[00:00:00.000 --> 00:00:02.500] Hello there.\n[00:00:02.500 --> 00:00:02.500] \n"
        "[00:00:03.000 --> 01:01:01.240] General Kenobi!"
    )
    assert render(result, "a.wav", "txt") == "Hello there. General Kenobi!"
    assert json.loads(render(result, "a.wav", "json"))["segments"][2] == {"start": 3.0, "end": 3661.24, "text": " General Kenobi!"}


@pytest.fixture
def two_wavs(tmp_path):
    import wave

    paths = []
    for n, length in enumerate(("shorter than a chunk", "30.01 s")):
        path = tmp_path / f"speech{n}.wav"
        with wave.open(str(path), "wb") as f:
            f.setnchannels(1), f.setsampwidth(2), f.setframerate(SAMPLE_RATE)
            f.writeframes((np.clip(synthetic_speech(LENGTHS[length], n), -1, 1) * 32767).astype("<i2").tobytes())
        paths.append(path)
    return paths


def test_cli_subtitles_equal_the_apis_segments(timestamps_checkpoint, two_wavs, tmp_path, capsys):
    """srt turns timestamps on; --output-dir writes <name>.srt; printed, each document follows a head-style
    '==> path <==' line when there are several inputs."""
    from distilwhisper.cli import main, render

    model = load_model(timestamps_checkpoint, device="cpu")
    expected = [model.transcribe(p, max_new_tokens=8, return_timestamps=True) for p in two_wavs]
    options = ["--model", str(timestamps_checkpoint), "--max-new-tokens", "8", "--output-format", "srt"]
    assert main([*map(str, two_wavs), *options, "--output-dir", str(tmp_path / "out")]) == 0
    for path, result in zip(two_wavs, expected):
        assert (tmp_path / "out" / f"{path.stem}.srt").read_text() == render(result, str(path), "srt") + "\n"
    capsys.readouterr()
    assert main([*map(str, two_wavs), *options]) == 0
    assert capsys.readouterr().out == "".join(
        f"==> {path} <==\n{render(result, str(path), 'srt')}\n\n" for path, result in zip(two_wavs, expected)
    )
    assert main([str(two_wavs[0]), *options[:-1], "json", "--timestamps"]) == 0
    assert json.loads(capsys.readouterr().out)["segments"] == expected[0].to_dict()["segments"]
