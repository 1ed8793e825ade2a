"""Properties that must hold for any input, checked on inputs hypothesis generates (and shrinks when one fails).

- the built-in WAV reader: any 16-bit or float WAV, any rate and channel count, reads back at 16 kHz with
  the length the resampler promises and every sample in [-1, 1]; at 16 kHz, the very samples written;
- the resampler: ceil(n * 16000 / rate) samples, bounded by the input's peak, a constant kept constant;
- the tokenizer: decode(encode(text)) == text for any Unicode text;
- long-form stitching: overlapping pieces of one sequence stitch back into it (preconditions below).
"""

import math

import numpy as np
import pytest
from helpers import BASE_MODEL, needs_shared, use_decoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_audio import wav_bytes

from distilwhisper.audio import SAMPLE_RATE, decode_audio, resample
from distilwhisper.longform import stitch

# Fast enough for every CI run; deadline None because the first call of a rate builds its filter.
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RATES = st.one_of(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]), st.integers(1000, 96000))
PCM, FLOAT = 0x0001, 0x0003


def expected_length(frames: int, rate: int) -> int:
    return frames if rate == SAMPLE_RATE else math.ceil(frames * SAMPLE_RATE / rate)


@PROPERTY
@given(rate=RATES, channels=st.integers(1, 3), frames=st.integers(1, 3000), kind=st.sampled_from(["int16", "float32"]),
       seed=st.integers(0, 2**32 - 1))  # fmt: skip
def test_any_wav_reads_back_at_16khz_in_range(rate, channels, frames, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "int16":
        codes = rng.integers(-32768, 32768, (frames, channels)).astype("<i2")
        data, written = wav_bytes(codes.tobytes(), tag=PCM, width=2, channels=channels, rate=rate), codes / 32768
    else:  # float WAVs may hold samples beyond full scale: the reader clips them, as ffmpeg's 16-bit output does
        written = (rng.standard_normal((frames, channels)) * 0.7).astype("<f4")
        data = wav_bytes(written.tobytes(), tag=FLOAT, width=4, channels=channels, rate=rate)
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_decoder(monkeypatch, "builtin")
        samples = decode_audio(data)
    assert samples.dtype == np.float32 and len(samples) == expected_length(frames, rate)
    assert np.all(np.abs(samples) <= 1.0)
    if rate == SAMPLE_RATE:
        np.testing.assert_allclose(samples, np.clip(written.mean(axis=1), -1, 1), rtol=0, atol=1e-6)


@PROPERTY
@given(rate=RATES, n=st.integers(1, 5000), peak=st.floats(1e-3, 10.0), seed=st.integers(0, 2**32 - 1))
def test_resampling_keeps_the_length_rule_and_bounds(rate, n, peak, seed):
    audio = (np.random.default_rng(seed).uniform(-1, 1, n) * peak).astype(np.float32)
    out = resample(audio, rate, "test input")
    assert out.dtype == np.float32 and len(out) == expected_length(n, rate)
    # A band-limited interpolation overshoots a little (Gibbs) but never by much: the filter's taps sum to about 1.
    assert np.all(np.abs(out) <= 2.0 * np.abs(audio).max())


@settings(PROPERTY, max_examples=25)
@given(rate=RATES, level=st.floats(-1.0, 1.0))
def test_resampling_keeps_a_constant_signal_constant_away_from_the_edges(rate, level):
    out = resample(np.full(rate // 3, level, np.float32), rate, "test input")  # a third of a second
    middle = out[len(out) // 4 : -(len(out) // 4)]  # the filter reaches past the ends, where the signal stops
    np.testing.assert_allclose(middle, level, rtol=0, atol=1e-3)


@pytest.fixture(scope="module")
def tokenizer():
    from distilwhisper.tokenizer import load_tokenizer

    return load_tokenizer(BASE_MODEL)


@needs_shared
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60) | st.text(st.sampled_from(" \n\t'’.,!?éß€😀日本<|>endoftext0123"), max_size=60))
def test_tokenizer_round_trips_any_text(tokenizer, text):
    tokens = tokenizer.encode(text)
    assert all(t < tokenizer.eot for t in tokens)  # text, even "<|endoftext|>" written out, is never a special token
    assert tokenizer.decode(tokens) == text


@st.composite
def overlapping_pieces(draw):
    """(sequence, pieces): windows over a sequence of distinct tokens, as long-form chunks lie over the audio.

    Preconditions under which stitching gives the sequence back:
    - no token repeats in the sequence, so only the true alignment has tokens that agree;
    - consecutive pieces overlap by at least 2 tokens (stitch needs two agreeing tokens to align);
    - each piece starts after the previous one starts, ends after it ends, and starts no earlier than the end of
      the piece before the previous one: the overlaps do not overlap each other (15 s chunks with 2.5 s strides
      have the same shape). Pieces nested in others, or overlaps of one token, are not merged back exactly.
    Empty pieces (chunks that decoded to nothing) are scattered among them: stitch leaves them out.
    """
    sequence = draw(st.lists(st.integers(0, 50256), min_size=1, max_size=80, unique=True))
    n, pieces, start, reach = len(sequence), [], 0, 0  # reach: where the piece before the current one ends
    while True:
        lowest_end = max(start + 3, reach + 2)  # room for the next piece to start after both bounds, 2 tokens before this end
        end = n if lowest_end > n else draw(st.integers(lowest_end, n))
        pieces.append(sequence[start:end])
        if end == n:
            break
        start, reach = draw(st.integers(max(start + 1, reach), end - 2)), end
    for _ in range(draw(st.integers(0, 3))):
        pieces.insert(draw(st.integers(0, len(pieces))), [])
    return sequence, pieces


@settings(max_examples=300, deadline=None)
@given(overlapping_pieces())
def test_stitching_overlapping_pieces_gives_the_sequence_back(case):
    sequence, pieces = case
    assert stitch(pieces) == sequence
