"""distilwhisper.audio against transformers' WhisperFeatureExtractor (the feature oracle) and ffmpeg (the decoder)."""

import math
import os
import re
import resource
import struct
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import AUDIO_DIR, needs_ffmpeg, needs_shared, read_manifest, use_decoder
from transformers import WhisperFeatureExtractor

from distilwhisper.audio import (LOUDEST_SAMPLE, N_FRAMES, N_SAMPLES, SAMPLE_RATE, load_audio, log_mel_spectrogram, pad_or_trim,
                                 stream_audio)
from distilwhisper.errors import DistilWhisperError

# Measured on the shared speech: our float32 features equal the extractor's (torch) output exactly on CPU (max abs
# diff 0.0, 80 and 128 bins) and differ from its float64 numpy path by at most 2.7e-5. 1e-4 leaves room for other
# FFT/BLAS backends; real mistakes (window, dropped frame, filterbank, per-example max) move values by > 1e-2.
TOLERANCE = 1e-4

PCM, FLOAT = 0x0001, 0x0003


@lru_cache(maxsize=None)
def feature_extractor(n_mels: int) -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor(feature_size=n_mels)


def hf_log_mel(samples, n_mels: int = 80) -> np.ndarray:
    """The oracle: WhisperFeatureExtractor pads (or cuts) to 30 s itself, as pad_or_trim does for us."""
    return feature_extractor(n_mels)(samples, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features


def wav_bytes(data: bytes, *, tag: int, width: int, channels: int = 1, rate: int = SAMPLE_RATE, extensible=False):
    """A WAV file built by hand, since the stdlib cannot write float or WAVE_FORMAT_EXTENSIBLE files."""
    block_align = channels * width
    header_tag = 0xFFFE if extensible else tag
    fmt = struct.pack("<HHIIHH", header_tag, channels, rate, rate * block_align, block_align, 8 * width)
    if extensible:  # cbSize, valid bits, channel mask, then the SubFormat GUID whose first two bytes are the tag
        fmt += struct.pack("<HHIH", 22, 8 * width, 0, tag) + bytes.fromhex("000000001000800000aa00389b71")
    junk = b"junk" + struct.pack("<I", 3) + b"abc\x00"  # an odd-sized chunk the reader must skip, pad byte included
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + junk + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tone(rate: int, tones_hz=(1000.0,), seconds: float = 2.0) -> np.ndarray:
    """16-bit codes of equal-amplitude sines, 0.4 of full scale in all."""
    t = np.arange(int(rate * seconds)) / rate
    x = sum(np.sin(2 * np.pi * f * t) for f in tones_hz) * 0.4 / len(tones_hz)
    return np.round(x * 32767).astype("<i2")


def write_pcm16(path, codes: np.ndarray, rate: int):
    path.write_bytes(wav_bytes(codes.tobytes(), tag=PCM, width=2, rate=rate))
    return path


def dominant_hz(samples: np.ndarray) -> float:
    return np.argmax(np.abs(np.fft.rfft(samples))) * SAMPLE_RATE / len(samples)


@pytest.fixture
def builtin_reader(monkeypatch):
    use_decoder(monkeypatch, "builtin")


# --- log-Mel features -------------------------------------------------------------------------------------------


@needs_shared
def test_log_mel_of_real_speech_matches_whisper_feature_extractor():
    files = read_manifest()
    assert files, f"no short files in {AUDIO_DIR}"
    for path, _ in files:
        samples = load_audio(path)
        ours = log_mel_spectrogram(pad_or_trim(samples))
        assert ours.shape == (80, N_FRAMES) and ours.dtype == torch.float32
        np.testing.assert_allclose(ours.numpy(), hf_log_mel(samples)[0], rtol=0, atol=TOLERANCE, err_msg=path.name)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_batched_noise_matches_per_example_and_whisper_feature_extractor(n_mels):
    rng = np.random.default_rng(0)
    # Loudness differs by orders of magnitude so a batch-wide max in the 80 dB floor would show.
    lengths, gains = [8000, 7 * SAMPLE_RATE + 123, N_SAMPLES, N_SAMPLES + 500], [1.0, 1e-3, 0.3, 1e-5]
    clips = [(g * rng.standard_normal(n)).astype(np.float32) for n, g in zip(lengths, gains)]
    expected = hf_log_mel(clips, n_mels)

    singles = [log_mel_spectrogram(pad_or_trim(clip), n_mels) for clip in clips]
    batched = log_mel_spectrogram(torch.stack([pad_or_trim(torch.from_numpy(c)) for c in clips]), n_mels)

    assert batched.shape == (len(clips), n_mels, N_FRAMES)
    for i, single in enumerate(singles):
        torch.testing.assert_close(batched[i], single, rtol=0, atol=1e-6)
        np.testing.assert_allclose(single.numpy(), expected[i], rtol=0, atol=TOLERANCE, err_msg=f"clip {i}")


def test_pad_or_trim_zero_pads_or_cuts_along_axis_and_keeps_type():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    for array in (x, torch.from_numpy(x)):
        padded, cut = pad_or_trim(array, 6), pad_or_trim(array, 2, axis=0)
        assert type(padded) is type(array) and type(cut) is type(array)
        np.testing.assert_array_equal(np.asarray(padded), np.hstack([x, np.zeros((3, 2), np.float32)]))
        np.testing.assert_array_equal(np.asarray(cut), x[:2])


# --- the built-in WAV reader ------------------------------------------------------------------------------------


def _pcm24(codes):
    return codes.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


# encoding -> (format tag, bytes per sample, random codes -> file bytes, codes -> expected floats)
ENCODINGS = {
    "pcm8": (PCM, 1, lambda r: r.integers(0, 256, 999).astype(np.uint8), lambda c: (c - 128.0) / 128),
    "pcm16": (PCM, 2, lambda r: r.integers(-(2**15), 2**15, 999).astype("<i2"), lambda c: c / 2.0**15),
    "pcm24": (PCM, 3, lambda r: r.integers(-(2**23), 2**23, 999), lambda c: c / 2.0**23),
    "pcm32": (PCM, 4, lambda r: r.integers(-(2**31), 2**31, 999).astype("<i4"), lambda c: c / 2.0**31),
    "float32": (FLOAT, 4, lambda r: r.uniform(-1, 1, 999).astype("<f4"), lambda c: c),
    "float64": (FLOAT, 8, lambda r: r.uniform(-1, 1, 999).astype("<f8"), lambda c: c),
}


@pytest.mark.parametrize("extensible", [False, True], ids=["plain", "extensible"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_builtin_reader_decodes_every_wav_encoding(builtin_reader, tmp_path, encoding, extensible):
    tag, width, make_codes, to_float = ENCODINGS[encoding]
    codes = make_codes(np.random.default_rng(1))
    data = _pcm24(codes) if width == 3 else codes.tobytes()
    path = tmp_path / f"{encoding}.wav"
    path.write_bytes(wav_bytes(data, tag=tag, width=width, extensible=extensible))

    samples = load_audio(path)

    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples, to_float(codes).astype(np.float32))


def test_builtin_reader_averages_stereo_to_mono(builtin_reader, tmp_path):
    left, right = np.random.default_rng(2).integers(-(2**15), 2**15, (2, 999)).astype("<i2")
    path = tmp_path / "stereo.wav"
    path.write_bytes(wav_bytes(np.stack([left, right], axis=1).tobytes(), tag=PCM, width=2, channels=2))

    np.testing.assert_allclose(load_audio(path), (left / 2.0**15 + right / 2.0**15) / 2, rtol=0, atol=1e-7)


@pytest.mark.parametrize("rate", [8000, 44100])
def test_builtin_reader_resamples_to_16khz_keeping_the_tone(builtin_reader, tmp_path, rate):
    samples = load_audio(write_pcm16(tmp_path / "tone.wav", tone(rate), rate))

    assert len(samples) == 2 * SAMPLE_RATE
    assert abs(dominant_hz(samples) - 1000.0) <= 1.0
    assert 0.38 < np.abs(samples[1000:-1000]).max() < 0.42  # amplitude 0.4 passes the filter unchanged


# Rates sharing no large factor with 16 kHz (22051 is prime): 16000 phases, too many for a table of kernels.
UNUSUAL_RATES = [11127, 22051, 44099]


@pytest.mark.parametrize("rate", [44100, 44099])  # rates that can hold a 12 kHz tone, with and without a table
def test_builtin_resampler_removes_content_above_8khz_instead_of_aliasing_it(builtin_reader, tmp_path, rate):
    # Naive interpolation folds a 12 kHz tone down to 4 kHz; a band-limited resampler removes it.
    samples = load_audio(write_pcm16(tmp_path / "tones.wav", tone(rate, (1000.0, 12000.0)), rate))
    spectrum = np.abs(np.fft.rfft(samples[1000:-1000]))
    hz = np.fft.rfftfreq(len(samples) - 2000, 1 / SAMPLE_RATE)
    kept, folded = spectrum[np.abs(hz - 1000) < 5].max(), spectrum[np.abs(hz - 4000) < 5].max()
    assert folded < 1e-3 * kept


@needs_ffmpeg
@pytest.mark.parametrize("rate", [8000, 44100, *UNUSUAL_RATES])
def test_builtin_resampler_agrees_with_ffmpeg(monkeypatch, tmp_path, rate):
    path = write_pcm16(tmp_path / "tone.wav", tone(rate, (440.0, 3000.0)), rate)
    reference = load_audio(path)  # ffmpeg's resampler
    use_decoder(monkeypatch, "builtin")
    samples = load_audio(path)

    assert len(samples) == len(reference)
    # The filters differ only where they run into the file's edges (and ffmpeg rounds to 16 bits).
    np.testing.assert_allclose(samples[200:-200], reference[200:-200], rtol=0, atol=1e-3)


@pytest.mark.parametrize("rate", [1000, *UNUSUAL_RATES, 384000])
def test_builtin_resampler_keeps_the_tone_at_any_rate_in_bounded_time_and_memory(builtin_reader, tmp_path, rate):
    path = write_pcm16(tmp_path / "tone.wav", tone(rate, (440.0,)), rate)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()

    samples = load_audio(path)

    seconds = time.perf_counter() - start
    # ru_maxrss is the process's peak so far, so this bounds what the call used beyond earlier tests' peak.
    # A table of one kernel per phase needed 16000 x 11193 float64 taps (1.4 GB each copy) at 11127 Hz.
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_kib) / 1024
    assert seconds < 5 and grown_mib < 200, f"{seconds:.1f} s, {grown_mib:.0f} MiB"
    assert len(samples) == 2 * SAMPLE_RATE
    assert abs(dominant_hz(samples) - 440.0) <= 1.0
    assert 0.38 < np.abs(samples[1000:-1000]).max() < 0.42


@pytest.mark.parametrize("rate", [1000, 8000, 44100, *UNUSUAL_RATES, 384000])
def test_builtin_resampler_keeps_the_duration_and_full_scale_range(builtin_reader, tmp_path, rate):
    # Full-scale noise overshoots when band-limited; the reader clips it as ffmpeg's 16-bit output does.
    for n in (1, 2, 999, 12345):
        codes = np.random.default_rng(n).choice(np.array([-32768, 32767], "<i2"), n)
        samples = load_audio(write_pcm16(tmp_path / f"{n}.wav", codes, rate))

        assert len(samples) == math.ceil(n * SAMPLE_RATE / rate), n
        assert np.abs(samples).max() <= 1.0


# --- ffmpeg -----------------------------------------------------------------------------------------------------


@needs_shared
@needs_ffmpeg
def test_ffmpeg_and_builtin_reader_decode_a_real_wav_to_the_same_samples(monkeypatch):
    path = read_manifest()[0][0]  # 16 kHz 16-bit PCM, so neither side resamples or rounds
    from_ffmpeg = load_audio(path)
    use_decoder(monkeypatch, "builtin")

    np.testing.assert_array_equal(load_audio(path), from_ffmpeg)


def _ffmpeg_convert(source, target):
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(source), str(target)], check=True)
    return target


@needs_ffmpeg
def test_ffmpeg_decodes_flac_losslessly(tmp_path):
    codes = tone(SAMPLE_RATE, (440.0,))
    flac = _ffmpeg_convert(write_pcm16(tmp_path / "tone.wav", codes, SAMPLE_RATE), tmp_path / "tone.flac")

    np.testing.assert_array_equal(load_audio(flac), codes / np.float32(2**15))


@needs_ffmpeg
def test_ffmpeg_decodes_and_resamples_mp3(tmp_path):
    wav = write_pcm16(tmp_path / "tone.wav", tone(44100, (440.0,)), 44100)
    mp3 = _ffmpeg_convert(wav, tmp_path / "tone.mp3")

    samples = load_audio(mp3)

    assert abs(len(samples) - 2 * SAMPLE_RATE) < 0.1 * SAMPLE_RATE  # mp3 adds encoder delay and padding
    assert abs(dominant_hz(samples) - 440.0) <= 1.0


# --- errors -----------------------------------------------------------------------------------------------------


def _missing(tmp_path):
    return tmp_path / "missing.wav"


def _directory(tmp_path):
    (tmp_path / "folder.wav").mkdir()
    return tmp_path / "folder.wav"


def _text_file(tmp_path):
    (tmp_path / "x.wav").write_text("this is not audio\n")
    return tmp_path / "x.wav"


def _truncated_wav(tmp_path):
    (tmp_path / "truncated.wav").write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    return tmp_path / "truncated.wav"


def _no_samples(tmp_path):
    (tmp_path / "empty.wav").write_bytes(wav_bytes(b"", tag=PCM, width=2))
    return tmp_path / "empty.wav"


def _fifo(tmp_path):
    os.mkfifo(tmp_path / "pipe.wav")
    return tmp_path / "pipe.wav"


def _device(tmp_path):
    return Path("/dev/null")


BAD_FILES = {  # name -> (make the file in tmp_path, what the message says, whichever decoder ran)
    "missing": (_missing, "not found"),
    "directory": (_directory, "directory"),
    "fifo": (_fifo, "not a regular file"),
    "device": (_device, "not a regular file"),
    "text-as-wav": (_text_file, "could not decode"),
    "truncated-wav": (_truncated_wav, "could not decode"),
    "no-samples": (_no_samples, "no audio samples"),
}


@pytest.mark.parametrize("make_file, says", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_audio_files_raise_one_line_errors_naming_the_file(decoder, tmp_path, make_file, says):
    path = make_file(tmp_path)
    with pytest.raises(DistilWhisperError, match=says) as error:
        load_audio(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message


def test_builtin_reader_says_other_formats_need_ffmpeg(builtin_reader, tmp_path):
    with pytest.raises(DistilWhisperError, match="ffmpeg"):
        load_audio(_text_file(tmp_path))


# ffmpeg and PyAV would resample any rate: 8 Hz turned a 350 KB file into 22,000 s of samples.
@pytest.mark.parametrize("rate", [8, 500, 999, 384001, 2**31 - 1])
def test_every_decoder_refuses_wav_sample_rates_outside_1_to_384_khz(decoder, tmp_path, rate):
    path = write_pcm16(tmp_path / "odd-rate.wav", tone(1000, seconds=0.1), rate)
    with pytest.raises(DistilWhisperError, match=f"unsupported sample rate {rate} Hz") as error:
        load_audio(path)
    message = str(error.value)
    assert str(path) in message and "1000 to 384000 Hz" in message and "\n" not in message


def test_builtin_reader_refuses_a_header_whose_frames_cannot_hold_its_samples(builtin_reader, tmp_path):
    data = bytearray(wav_bytes(tone(SAMPLE_RATE, seconds=0.1).tobytes(), tag=PCM, width=2))
    struct.pack_into("<H", data, 32, 1)  # block_align: 1-byte frames, where a 16-bit sample needs 2
    path = tmp_path / "misaligned.wav"
    path.write_bytes(data)
    with pytest.raises(DistilWhisperError, match=r"corrupt WAV file \(1-byte frames cannot hold 1 x 16-bit samples\)"):
        load_audio(path)


@pytest.mark.parametrize("rate", [0, -1, 999, 384001, 10**9, 16000.0, "16000"])
def test_output_sample_rates_outside_1_to_384_khz_are_refused_before_decoding(decoder, tmp_path, rate):
    path = write_pcm16(tmp_path / "tone.wav", tone(SAMPLE_RATE, seconds=0.1), SAMPLE_RATE)
    # stream_audio decodes nothing until a block is asked for, so this also shows the check comes before decoding.
    with pytest.raises(DistilWhisperError, match=re.escape(f"sample_rate: unsupported sample rate {rate!r} Hz")):
        stream_audio(path, sample_rate=rate)


WILD_RATE_SCRIPT = """
import sys
from distilwhisper.audio import decode_audio, load_audio
from distilwhisper.errors import DistilWhisperError

path = sys.argv[1]
for rate in (0, 10**9):
    for call in (lambda: load_audio(path, rate), lambda: decode_audio(open(path, "rb").read(), sample_rate=rate)):
        try:
            call()
        except DistilWhisperError as e:
            print(e)
"""


@needs_ffmpeg
def test_load_audio_and_decode_audio_refuse_wild_sample_rates_instead_of_hanging(tmp_path):
    # 5 s is more than a pipe holds (64 KB): ffmpeg asked for 0 Hz blocked forever on its full pipe.
    path = write_pcm16(tmp_path / "tone.wav", tone(SAMPLE_RATE, seconds=5.0), SAMPLE_RATE)
    cmd = [sys.executable, "-c", WILD_RATE_SCRIPT, str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=Path(__file__).parents[1])

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"sample_rate: unsupported sample rate {rate} Hz (expected a whole number "
                                          f"from 1000 to 384000 Hz)" for rate in (0, 0, 10**9, 10**9)]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples_raise(bad):
    samples = np.zeros(N_SAMPLES, np.float32)
    samples[1234] = bad
    with pytest.raises(DistilWhisperError, match="NaN or infinite"):
        log_mel_spectrogram(samples)


@pytest.mark.parametrize("shape", [(0,), (100,), (2, 3, N_SAMPLES)])
def test_audio_too_short_for_the_stft_or_of_the_wrong_rank_raises(shape):
    with pytest.raises(DistilWhisperError, match="expected audio of shape"):
        log_mel_spectrogram(np.zeros(shape, np.float32))


without_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


BAD_FEATURE_INPUTS = {  # name -> (samples, log_mel_spectrogram's other arguments, what the message says)
    "none": (None, {}, "numpy array or torch tensor, got NoneType"),
    "complex": (np.ones(1000, np.complex64), {}, "real samples .* got ndarray of complex64"),
    "empty-batch": (np.zeros((0, 1000), np.float32), {}, r"expected audio of shape .*, got \(0, 1000\)"),
    "no-mels": (np.zeros(1000, np.float32), {"n_mels": 0}, "n_mels must be a whole number from 1 to 149"),
    "negative-mels": (np.zeros(1000, np.float32), {"n_mels": -1}, "n_mels must be a whole number from 1 to 149"),
    "empty-mel-filters": (np.zeros(1000, np.float32), {"n_mels": 150}, "n_mels must be a whole number from 1 to 149"),
    "unknown-device": (np.zeros(1000, np.float32), {"device": "tpu"}, "cannot use device 'tpu'"),
}


@pytest.mark.parametrize("samples, kwargs, says", [
    *BAD_FEATURE_INPUTS.values(),
    pytest.param(np.zeros(1000, np.float32), {"device": "cuda"}, "cannot use device 'cuda'", marks=without_cuda),
], ids=[*BAD_FEATURE_INPUTS, "cuda-absent"])  # fmt: skip
def test_bad_log_mel_inputs_raise_one_line_errors(samples, kwargs, says):
    with pytest.raises(DistilWhisperError, match=says) as error:
        log_mel_spectrogram(samples, **kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("layout", ["reversed", "big-endian"])
def test_log_mel_takes_reversed_and_big_endian_arrays_as_transcribe_does(layout):
    samples = (0.1 * np.random.default_rng(3).standard_normal(SAMPLE_RATE)).astype(np.float32)
    native = samples[::-1].copy() if layout == "reversed" else samples
    array = samples[::-1] if layout == "reversed" else samples.astype(">f4")

    torch.testing.assert_close(log_mel_spectrogram(array), log_mel_spectrogram(native), rtol=0, atol=0)


JFK = AUDIO_DIR / "short" / "jfk_inaugural_11s.wav"


@pytest.mark.parametrize("make_samples", [
    pytest.param(lambda: load_audio(JFK) * 1e18, marks=needs_shared, id="speech-x1e18"),
    pytest.param(lambda: np.random.default_rng(4).standard_normal(SAMPLE_RATE) * 1e30, id="noise-x1e30"),
])  # fmt: skip
def test_finite_samples_too_loud_for_float32_power_raise_instead_of_giving_inf(make_samples):
    says = "too loud: its power overflows float32 (samples should lie in [-1, 1])"
    with pytest.raises(DistilWhisperError, match=re.escape(says)):
        log_mel_spectrogram(pad_or_trim(make_samples()))


@pytest.mark.parametrize("waveform", [
    lambda n: np.ones(n),  # all of a frame's power in one bin, the worst case for its sum
    lambda n: (-1.0) ** np.arange(n),  # the same at the highest frequency
    lambda n: np.random.default_rng(6).uniform(-1, 1, n),
])  # fmt: skip
def test_samples_up_to_the_loudest_transcribe_takes_keep_the_log_mel_finite(waveform):
    """LOUDEST_SAMPLE, where transcribe refuses an input by name, is below where the frontend's power overflows."""
    features = log_mel_spectrogram((waveform(N_SAMPLES) * LOUDEST_SAMPLE).astype(np.float32))
    assert torch.isfinite(features).all()


BAD_PAD_OR_TRIM = {  # name -> (audio, length, axis, what the message says)
    "list": ([0.0, 1.0], N_SAMPLES, -1, "expects a numpy array or torch tensor, got list"),
    "none": (None, N_SAMPLES, -1, "expects a numpy array or torch tensor, got NoneType"),
    "path": ("speech.wav", N_SAMPLES, -1, "expects a numpy array or torch tensor, got str"),
    "0-d-array": (np.array(0.5), N_SAMPLES, -1, r"axis -1 does not exist in audio of shape \(\)"),
    "axis-5": (np.zeros(3), N_SAMPLES, 5, r"axis 5 does not exist in audio of shape \(3,\)"),
    "negative-length-tensor": (torch.zeros(3), -1, -1, "length must be a whole number of samples, 0 or more, got -1"),
    "negative-length-array": (np.zeros(3), -1, -1, "length must be a whole number of samples, 0 or more, got -1"),
}


@pytest.mark.parametrize("audio, length, axis, says", BAD_PAD_OR_TRIM.values(), ids=BAD_PAD_OR_TRIM.keys())
def test_bad_pad_or_trim_arguments_raise_one_line_errors(audio, length, axis, says):
    with pytest.raises(DistilWhisperError, match=says) as error:
        pad_or_trim(audio, length, axis)
    assert "\n" not in str(error.value)


def test_silence_is_not_an_error_and_matches_whisper_feature_extractor(decoder, tmp_path):
    path = tmp_path / "silence.wav"
    path.write_bytes(wav_bytes(bytes(2 * SAMPLE_RATE), tag=PCM, width=2))

    samples = load_audio(path)
    features = log_mel_spectrogram(pad_or_trim(samples))

    assert np.all(samples == 0) and len(samples) == SAMPLE_RATE
    assert torch.isfinite(features).all()
    np.testing.assert_allclose(features.numpy(), hf_log_mel(samples)[0], rtol=0, atol=TOLERANCE)
