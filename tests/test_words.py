"""Word timestamps against their oracle, transformers 5's ASR pipeline with return_timestamps="word":

- each step against the transformers function it mirrors: `median_filter` (`_median_filter`), `dtw`
  (`_dynamic_time_warping`, ties and NaN included), word grouping (`_collate_word_timestamps`), the merge with token
  times (`_decode_asr(return_timestamps="word")`);
- whole transcripts against the pipeline's `chunks`: random-weight checkpoints with alignment heads on synthetic
  audio (short-form, chunked with batch_size=4, an initial prompt), whisper-base on real speech (short files alone
  and batched, a concatenation that needs two decoding passes, chunked long audio);
- speculative decoding and a compiled batch's padding rows give the same words; a checkpoint without alignment
  heads is refused in one line.

The pipeline is always built in float32 (it loads whisper-base in float16 otherwise) and called greedy (num_beams=1).
Words and times are compared for equality: the times are rounded to 0.01 s on both sides, and the attention weights
we compute (SDPA for self-attention) differ from transformers' eager ones by float32 rounding only, far below
what moves a DTW path (docs/words.md).
"""

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import AUDIO_DIR, BASE_MODEL, EOT, GREEDY, T0, needs_shared, pipeline_ready
from distilwhisper import DistilWhisperError, TranscribeOptions, Word, load_model
from distilwhisper.alignment import Alignment, dtw, median_filter
from distilwhisper.audio import SAMPLE_RATE, load_audio
from distilwhisper.compiled import eager_steps
from distilwhisper.longform import Chunk, chunk_audio, stitch_with_timestamps
from distilwhisper.tokenizer import load_tokenizer
from distilwhisper.words import words_of
from test_longform import LENGTHS, asr_pipeline, synthetic_speech, whisper_tokenizer

HEADS = {"distil-2dec": [[0, 1], [1, 0], [1, 3], [1, 5]], "tiny-4x4": [[2, 0], [3, 1], [3, 3]]}
SHORT_FILES = ["jfk_inaugural_11s.wav", "ljspeech_LJ001-0001.wav", "mfa_crossword.wav"]
MULTIPASS_PARTS = ["cmu_arctic_prompts_cathy_a0105.wav", "librivox_sense_and_sensibility_0870.wav",
                   "librivox_sense_and_sensibility_0920.wav", "ljspeech_LJ001-0007.wav"]  # 27.5 s: two passes  # fmt: skip
LONG_PARTS = ["jfk_inaugural_11s.wav", "librivox_sense_and_sensibility_0870.wav", "ljspeech_LJ001-0001.wav",
              "librivox_sense_and_sensibility_0890.wav", "ljspeech_LJ001-0003.wav", "cmu_arctic_prompts_cathy_a0101.wav"]  # fmt: skip


def pipeline_words(result: dict) -> list[Word]:
    return [Word(*chunk["timestamp"], chunk["text"]) for chunk in result["chunks"]]


def concatenated(names: list[str]) -> np.ndarray:
    """Short files one after the other, half a second of silence between them."""
    gap = np.zeros(SAMPLE_RATE // 2, np.float32)
    parts = [load_audio(AUDIO_DIR / "short" / name) for name in names]
    return np.concatenate([x for part in parts for x in (part, gap)][:-1])


# --- each step against the transformers function it mirrors -------------------------------------------------------


def test_median_filter_equals_transformers():
    from transformers.models.whisper.generation_whisper import _median_filter

    generator = torch.Generator().manual_seed(0)
    for frames in (1, 3, 4, 7, 50):  # too short to mirror (left alone), just long enough, longer
        x = torch.randn(3, 5, frames, generator=generator)
        for width in (3, 7):
            assert torch.equal(median_filter(x, width), _median_filter(x, width))


@pytest.mark.parametrize("kind", ["random", "ties", "one token (NaN)", "one frame"])
def test_dtw_equals_transformers(kind):
    """Ties (integer costs) go to the frame step as there; a row of NaN (one token: std 0) takes frame steps only."""
    from transformers.models.whisper.generation_whisper import _dynamic_time_warping

    rng = np.random.default_rng(len(kind))
    for _ in range(20):
        tokens, frames = int(rng.integers(2, 12)), int(rng.integers(2, 40))
        cost = {"random": lambda: rng.standard_normal((tokens, frames)),
                "ties": lambda: rng.integers(-2, 2, (tokens, frames)).astype(np.float64),
                "one token (NaN)": lambda: np.full((1, frames), np.nan),
                "one frame": lambda: rng.standard_normal((tokens, 1))}[kind]()  # fmt: skip
        ours, theirs = dtw(cost.copy()), _dynamic_time_warping(cost.copy())
        assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])


def grouping_cases() -> list[list[int]]:
    """Token lists with what grouping must handle: punctuation before and after words, hyphens, characters split
    across tokens (accents, CJK, emoji), words without a space, bytes that never decode; and random ones."""
    tokenizer = whisper_tokenizer()
    texts = [' "Hello," she said (quietly) - an ill-disposed man.', " ¿Qué? ¡Sí! Ça va… «non» 'quoted.'",
             " 你好，世界。 日本語のテキスト", " emoji 🎉🎉 and ümlaut", "no leading space. Then,, more!? ) ( [x]"]  # fmt: skip
    cases = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    cases.append([tokenizer.encode(" caf", add_special_tokens=False)[0], 35719, 2364])  # a stray UTF-8 byte
    rng = np.random.default_rng(1)
    pool = sorted({t for case in cases for t in case})
    cases += [rng.choice(pool, int(rng.integers(1, 25))).tolist() for _ in range(40)]
    return cases


def test_word_grouping_equals_collate_word_timestamps():
    from transformers.models.whisper.tokenization_whisper import _collate_word_timestamps

    ours_tokenizer, theirs_tokenizer = load_tokenizer(BASE_MODEL), whisper_tokenizer()
    for tokens in grouping_cases():
        times = [(round(0.1 * i, 2), round(0.1 * i + 0.05, 2)) for i in range(len(tokens))]
        expected = _collate_word_timestamps(theirs_tokenizer, tokens, times, None, None)
        assert words_of(ours_tokenizer, tokens, times) == [Word(*w["timestamp"], w["text"]) for w in expected], tokens


def oracle_words(tokenizer, pieces, token_times) -> list[Word]:
    """_decode_asr(return_timestamps="word") on chunk outputs as the pipeline hands them over."""
    outputs = [{"tokens": torch.tensor([tokens + [EOT, EOT]]), "token_timestamps": torch.tensor([times + [0.0, 0.0]]),
                "stride": ((c.stop - c.start) / SAMPLE_RATE, c.left / SAMPLE_RATE, c.right / SAMPLE_RATE)}
               for (tokens, c), times in zip(pieces, token_times)]  # fmt: skip
    _, optional = tokenizer._decode_asr(outputs, return_timestamps="word", return_language=None, time_precision=30 / 1500)
    return [Word(*w["timestamp"], w["text"]) for w in optional["chunks"]]


def test_merge_with_token_times_equals_decode_asr():
    """Random well-formed chunk outputs with random (rising, float32) token times: the segments' text merged where
    the tokens agree and their times do not go back, as the pipeline's word-mode merge; words timed per token."""
    tokenizer, ours_tokenizer = whisper_tokenizer(), load_tokenizer(BASE_MODEL)
    rng = np.random.default_rng(2)
    text = tokenizer.encode(" a b c d e f", add_special_tokens=False)
    for _ in range(120):
        chunks = chunk_audio(int(rng.integers(16, 60)) * SAMPLE_RATE)
        pieces, token_times = [], []
        for chunk in chunks:
            tokens, time, length = [], 0, (chunk.stop - chunk.start) // 320
            while rng.random() < 0.85 and time < length:
                start = int(time + rng.integers(0, 30))
                end = int(start + rng.integers(1, 300))
                if end > 1500:
                    break
                tokens += [T0 + start, *rng.choice(text, int(rng.integers(0, 5))).tolist(), T0 + end]
                time = end
            if tokens and rng.random() < 0.3:
                tokens += rng.choice(text, 2).tolist()  # open at the end
            times = np.sort(rng.integers(0, 750, len(tokens)) * 0.02).astype(np.float32).tolist()
            pieces.append((tokens, chunk))
            token_times.append(times)
        spans = stitch_with_timestamps(pieces, T0, EOT, chunks[-1].stop / SAMPLE_RATE, token_times)
        ours = [w for s in spans for w in words_of(ours_tokenizer, s.tokens, s.times)]
        assert ours == oracle_words(tokenizer, pieces, token_times), pieces


def test_times_are_the_token_times_not_the_segments():
    """A token runs from the previous token's time (timestamps count) to its own; the chunk's offset is added."""
    tokenizer = load_tokenizer(BASE_MODEL)
    a, b = tokenizer.encode(" a"), tokenizer.encode(" b")
    pieces = [([T0, *a, *b, T0 + 100], Chunk(0, 3 * SAMPLE_RATE, 0, 0))]
    spans = stitch_with_timestamps(pieces, T0, EOT, 3.0, [[0.0, 0.4, 1.2, 1.5]])
    assert words_of(tokenizer, spans[0].tokens, spans[0].times) == [Word(0.0, 0.4, " a"), Word(0.4, 1.2, " b")]


# --- whole transcripts: random weights, synthetic audio -----------------------------------------------------------


@pytest.fixture(scope="module")
def words_checkpoint(random_checkpoint, tmp_path_factory):
    """words_checkpoint(config) -> a random checkpoint the pipeline loads too, timestamps free (test_timestamps.py's),
    with alignment heads; the 2-layer one with a median filter of 5 in config.json, which transformers reads from
    there. Made once per module and config."""
    made: dict[str, Path] = {}

    def make(config: str) -> Path:
        if config not in made:
            folder = Path(shutil.copytree(random_checkpoint(11, config, tokenizer="base"), tmp_path_factory.mktemp("words") / config))
            if config == "distil-2dec":
                text = (folder / "config.json").read_text()
                (folder / "config.json").write_text(text.replace('"median_filter_width": 7', '"median_filter_width": 5'))
                assert '"median_filter_width": 5' in (folder / "config.json").read_text()
            made[config] = pipeline_ready(folder, range(EOT + 1, T0), max_initial_timestamp_index=50, alignment_heads=HEADS[config])
        return made[config]

    return make


@pytest.fixture(scope="module")
def short_pipe(words_checkpoint):
    """short_pipe(config) -> the pipeline without chunking on words_checkpoint(config), made once per config."""
    from transformers import pipeline

    made: dict = {}

    def make(config: str):
        if config not in made:
            made[config] = pipeline("automatic-speech-recognition", model=str(words_checkpoint(config)), device="cpu",
                                    dtype=torch.float32)  # fmt: skip
        return made[config]

    return make


@pytest.mark.parametrize("config", list(HEADS))
def test_random_weights_short_form_words_equal_the_pipelines(words_checkpoint, short_pipe, config):
    """Random weights stop mid-segment at the token limit: a window takes several passes, some past the audio's end."""
    samples = synthetic_speech(10 * SAMPLE_RATE, seed=10)
    expected = short_pipe(config)({"raw": samples, "sampling_rate": SAMPLE_RATE}, return_timestamps="word",
                                  generate_kwargs={**GREEDY, "max_new_tokens": 12})  # fmt: skip
    got = load_model(words_checkpoint(config), device="cpu").transcribe(samples, language="en", max_new_tokens=12,
                                                                        no_speech_threshold=None, word_timestamps=True)  # fmt: skip
    assert got.words == pipeline_words(expected) and got.words
    assert got.text == expected["text"]


def test_random_weights_batched_short_inputs_equal_the_batched_pipeline(words_checkpoint, short_pipe):
    """Rows of a batch end at different steps: the end tokens fed meanwhile are part of each row's alignment."""
    audio = [synthetic_speech(SAMPLE_RATE * s, seed=s) for s in (4, 9, 13)]
    expected = short_pipe("distil-2dec")([{"raw": a, "sampling_rate": SAMPLE_RATE} for a in audio], batch_size=3,
                                         return_timestamps="word", generate_kwargs={**GREEDY, "max_new_tokens": 10})  # fmt: skip
    got = load_model(words_checkpoint("distil-2dec")).transcribe(audio, language="en", max_new_tokens=10, batch_size=3,
                                                                 no_speech_threshold=None, return_timestamps="word")  # fmt: skip
    assert [r.words for r in got] == [pipeline_words(e) for e in expected]


def test_random_weights_words_with_beam_search_equal_the_pipelines(words_checkpoint, short_pipe):
    """The words of the winning beam: one teacher-forced pass over its tokens gives the attention generate gathers
    step by step along the beam's history. One input at a time, as the pipeline takes a short input (in a batch,
    generate gives a row that ended early another row's attention for the steps after its end: deviations.md)."""
    options = dict(language="en", max_new_tokens=12, no_speech_threshold=None, word_timestamps=True)
    model = load_model(words_checkpoint("tiny-4x4"))
    for seconds in (5, 11):
        samples = synthetic_speech(SAMPLE_RATE * seconds, seed=seconds)
        expected = short_pipe("tiny-4x4")({"raw": samples, "sampling_rate": SAMPLE_RATE}, return_timestamps="word",
                                          generate_kwargs={**GREEDY, "max_new_tokens": 12, "num_beams": 3})  # fmt: skip
        got = model.transcribe(samples, num_beams=3, **options)
        assert got.words == pipeline_words(expected) and got.words
        assert got.words != model.transcribe(samples, **options).words


@pytest.mark.parametrize("config, length", [("tiny-4x4", "exactly four steps (40 s)"),
                                            ("distil-2dec", "last piece shorter than a stride (35.5 s)")])  # fmt: skip
def test_random_weights_chunked_words_equal_the_pipelines(words_checkpoint, config, length):
    samples = synthetic_speech(LENGTHS[length], seed=len(length))
    expected = asr_pipeline(words_checkpoint(config))({"raw": samples, "sampling_rate": SAMPLE_RATE}, return_timestamps="word",
                                                      generate_kwargs={**GREEDY, "max_new_tokens": 12})  # fmt: skip
    got = load_model(words_checkpoint(config)).transcribe(samples, language="en", max_new_tokens=12, batch_size=4,
                                                          no_speech_threshold=None, word_timestamps=True)  # fmt: skip
    assert got.words == pipeline_words(expected) and got.words
    assert got.text == expected["text"]


def test_random_weights_with_an_initial_prompt_equal_the_pipelines(words_checkpoint, short_pipe):
    """The previous text's rows are left out of the alignment, as generate(prompt_ids=...) leaves them."""
    from transformers import WhisperProcessor

    prompt = " Kenobi, Skywalker."
    prompt_ids = WhisperProcessor.from_pretrained(words_checkpoint("tiny-4x4")).get_prompt_ids(prompt, return_tensors="pt")
    samples = synthetic_speech(8 * SAMPLE_RATE, seed=5)
    expected = short_pipe("tiny-4x4")({"raw": samples, "sampling_rate": SAMPLE_RATE}, return_timestamps="word",
                                      generate_kwargs={**GREEDY, "max_new_tokens": 12, "prompt_ids": prompt_ids})  # fmt: skip
    got = load_model(words_checkpoint("tiny-4x4")).transcribe(samples, language="en", max_new_tokens=12, initial_prompt=prompt,
                                                              no_speech_threshold=None, word_timestamps=True)  # fmt: skip
    assert got.words == pipeline_words(expected) and got.words


def test_padding_rows_of_a_compiled_batch_change_nothing(words_checkpoint):
    """A batch of 3 runs as a bucket of 4 when compiled: the copy of the last row is decoded, not aligned."""
    model = load_model(words_checkpoint("tiny-4x4"))
    audio = [synthetic_speech(SAMPLE_RATE * s, seed=s) for s in (4, 9, 13)]
    options = dict(language="en", max_new_tokens=10, batch_size=3, no_speech_threshold=None, word_timestamps=True)
    plain = model.transcribe(audio, **options)
    eager = eager_steps(model.model)
    model.engine = replace(model.engine, steps=replace(eager, eager=eager))  # buckets as compiled steps, no compiling
    assert model.engine.steps.bucket(3) == 4
    assert [r.words for r in model.transcribe(audio, **options)] == [r.words for r in plain]


def test_words_with_an_assistant_are_the_main_models(words_checkpoint):
    audio = [synthetic_speech(SAMPLE_RATE * s, seed=s) for s in (6, 9)]
    options = dict(language="en", max_new_tokens=12, batch_size=2, no_speech_threshold=None, word_timestamps=True)
    plain = load_model(words_checkpoint("distil-2dec")).transcribe(audio, **options)
    fast = load_model(words_checkpoint("distil-2dec"), assistant="int8").transcribe(audio, **options)
    assert [r.words for r in fast] == [r.words for r in plain] and all(r.words for r in plain)
    assert all(r.acceptance_rate is not None for r in fast)


def test_word_timestamps_are_timestamps_with_words(words_checkpoint):
    model = load_model(words_checkpoint("tiny-4x4"))
    samples = synthetic_speech(6 * SAMPLE_RATE, seed=3)
    options = dict(language="en", max_new_tokens=12, no_speech_threshold=None)
    timed = model.transcribe(samples, return_timestamps=True, **options)
    worded = model.transcribe(samples, word_timestamps=True, **options)
    assert model.transcribe(samples, return_timestamps="word", **options) == worded
    assert timed.words == [] and worded.tokens == timed.tokens and worded.segments == timed.segments
    assert "".join(w.text for w in worded.words) == worded.text
    assert worded.to_dict()["words"] == [{"start": w.start, "end": w.end, "text": w.text} for w in worded.words]
    assert TranscribeOptions(return_timestamps="word") == TranscribeOptions(return_timestamps=True, word_timestamps=True)


def test_the_heads_and_the_median_width_are_the_ones_transformers_reads(words_checkpoint):
    """generation_config.json's alignment_heads, config.json's median_filter_width (5 here, 7 by default)."""
    from transformers import GenerationConfig, WhisperConfig

    folder = words_checkpoint("distil-2dec")
    alignment = load_model(folder).plan(TranscribeOptions(word_timestamps=True)).alignment
    heads = tuple(map(tuple, GenerationConfig.from_pretrained(folder).alignment_heads))
    assert alignment == Alignment(heads, WhisperConfig.from_pretrained(folder).median_filter_width) and alignment.median_width == 5


def test_a_checkpoint_without_alignment_heads_is_refused(random_checkpoint):
    model = load_model(random_checkpoint(11, "tiny-4x4", tokenizer="base"))
    with pytest.raises(DistilWhisperError, match="^word_timestamps needs the checkpoint's alignment_heads") as error:
        model.transcribe(np.zeros(SAMPLE_RATE, np.float32), word_timestamps=True)
    assert "\n" not in str(error.value)
    with pytest.raises(DistilWhisperError, match="word_timestamps must be True or False"):
        model.transcribe(np.zeros(SAMPLE_RATE, np.float32), word_timestamps="yes")


def test_alignment_heads_the_decoder_lacks_are_refused(random_checkpoint, copied):
    folder = pipeline_ready(copied(random_checkpoint(11, "tiny-4x4", tokenizer="base")), [], alignment_heads=[[4, 0]])
    with pytest.raises(DistilWhisperError, match="alignment_heads names head 0 of decoder layer 4, but the decoder has 4"):
        load_model(folder).plan(TranscribeOptions(word_timestamps=True))


# --- whisper-base, real speech --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_pipe():
    from transformers import pipeline

    return pipeline("automatic-speech-recognition", model=str(BASE_MODEL), device="cpu", dtype=torch.float32)


@needs_shared
def test_real_speech_short_files_batched_equal_the_batched_pipeline(base_model, base_pipe):
    """Three files of 4 to 10 s in one batch, as the pipeline batches them (batch_size=3)."""
    audio = [load_audio(AUDIO_DIR / "short" / name) for name in SHORT_FILES]
    expected = base_pipe([a.copy() for a in audio], batch_size=3, return_timestamps="word", generate_kwargs=GREEDY)
    got = base_model.transcribe(audio, language="en", batch_size=3, word_timestamps=True)
    assert [r.words for r in got] == [pipeline_words(e) for e in expected]
    assert [r.text for r in got] == [e["text"] for e in expected] and min(len(r.words) for r in got) > 5


@needs_shared
def test_real_speech_two_decoding_passes_equal_the_pipeline(base_model, base_pipe):
    """27.5 s in one window, whose first pass stops mid-speech: the second pass's times count from where it starts."""
    samples = concatenated(MULTIPASS_PARTS)
    expected = base_pipe(samples.copy(), return_timestamps="word", generate_kwargs=GREEDY)
    got = base_model.transcribe(samples, language="en", word_timestamps=True)
    assert got.words == pipeline_words(expected) and got.text == expected["text"] and len(got.words) > 50


@needs_shared
def test_real_speech_chunked_words_equal_the_pipeline(base_model):
    """48 s: five 15 s chunks, in a batch of 4 and a batch of 1 (whose rows end differently: other times)."""
    samples = concatenated(LONG_PARTS)
    expected = asr_pipeline(BASE_MODEL)(samples.copy(), return_timestamps="word", generate_kwargs=GREEDY)
    got = base_model.transcribe(samples, language="en", batch_size=4, word_timestamps=True)
    assert got.words == pipeline_words(expected) and got.text == expected["text"] and len(got.words) > 100
