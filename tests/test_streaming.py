"""Long files are read as they are decoded: every decoder streams exactly load_audio's samples, chunks cut from a
stream are chunk_audio's, transcripts do not change, memory does not grow with the file, and progress is reported.

The oracle for samples is each decoder reading the file whole (one block); for chunks, chunk_audio (itself checked
against the transformers pipeline in test_longform); for transcripts, the same audio transcribed from memory.
"""

import io
import os
import shutil
import stat
import subprocess
import sys
import time
import tracemalloc
import wave

import numpy as np
import pytest

from helpers import BASE_MODEL, needs_ffmpeg, needs_shared
from distilwhisper import DistilWhisperError, audio, load_audio, load_model
from distilwhisper.audio import SAMPLE_RATE, AudioStream, audio_duration, stream_audio
from distilwhisper.longform import chunk_audio, stream_chunks
from test_audio import BAD_FILES
from test_longform import LENGTHS, synthetic_speech


def write_wav(path, samples: np.ndarray, rate: int = SAMPLE_RATE, channels: int = 1):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels), f.setsampwidth(2), f.setframerate(rate)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def write_float_wav(path, samples: np.ndarray, rate: int) -> None:
    """32-bit float WAV (format tag 3), which the stdlib wave module cannot write."""
    data = samples.astype("<f4").tobytes()
    fmt = (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little")
    fmt += (rate * 4).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)


# (rate, channels): 16 kHz as is; a phase table (44.1 kHz stereo, 8 kHz); per-output taps (11127 Hz: large coprime parts)
FILES = {"16k mono": (16000, 1), "44.1k stereo": (44100, 2), "8k mono": (8000, 1), "11127 Hz mono": (11127, 1)}


@pytest.mark.parametrize("rate, channels", FILES.values(), ids=FILES.keys())
def test_each_decoder_streams_exactly_the_samples_it_decodes_whole(decoder, tmp_path, monkeypatch, rate, channels):
    """Blocks of 0.37 s of input (and the resampler's blocks cut to 2999 outputs) against one block for the file."""
    rng = np.random.default_rng(rate)
    path = write_wav(tmp_path / "a.wav", rng.uniform(-0.5, 0.5, 3 * rate * channels).astype(np.float32), rate, channels)
    monkeypatch.setattr(audio, "_BLOCK_SECONDS", 60.0)  # more than the file
    whole = list(stream_audio(path))
    monkeypatch.setattr(audio, "_BLOCK_SECONDS", 0.37)
    monkeypatch.setattr(audio, "_BLOCK_OUTPUTS", 2999)
    if decoder == "builtin":  # the resampler's blocks are part of its arithmetic: the whole file gets the same ones
        whole = [audio.resample(audio._wav_samples((tmp_path / "a.wav").read_bytes()[44:], 1, 2, channels, 2 * channels),
                                rate, "a.wav").clip(-1, 1)]  # fmt: skip
    streamed = list(stream_audio(path))
    assert len(whole) == 1 and len(streamed) > 2
    assert np.array_equal(np.concatenate(streamed), whole[0])
    assert np.array_equal(load_audio(path), whole[0])


def test_builtin_reader_streams_a_float_wav_resampled_as_whole(builtin_reader_only, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    samples = rng.uniform(-1.2, 1.2, 3 * 22050).astype(np.float32)  # past full scale: clipped after resampling
    write_float_wav(tmp_path / "f.wav", samples, 22050)
    monkeypatch.setattr(audio, "_BLOCK_SECONDS", 0.29)
    monkeypatch.setattr(audio, "_BLOCK_OUTPUTS", 1000)
    assert np.array_equal(np.concatenate(list(stream_audio(tmp_path / "f.wav"))), audio.resample(samples, 22050, "f").clip(-1, 1))


@pytest.fixture
def builtin_reader_only(monkeypatch):
    from helpers import use_decoder

    use_decoder(monkeypatch, "builtin")


@pytest.mark.parametrize("block", [7919, 160000, 10**7])
@pytest.mark.parametrize("n_samples", LENGTHS.values(), ids=LENGTHS.keys())
def test_chunks_cut_from_a_stream_are_chunk_audios(n_samples, block):
    """The length is unknown until the blocks end: reading one sample past each chunk must be enough."""
    samples = np.arange(n_samples, dtype=np.float32)
    blocks = (samples[i : i + block] for i in range(0, n_samples, block))
    streamed = list(stream_chunks(blocks))
    assert [c for c, _ in streamed] == chunk_audio(n_samples)
    assert all(np.array_equal(piece, samples[c.start : c.stop]) for c, piece in streamed)


@pytest.mark.parametrize("chunk_length, stride_length", [(30, None), (7.3, None), (10, 0), (12.5, 3.3)])
def test_streamed_chunks_of_other_lengths_are_chunk_audios(chunk_length, stride_length):
    n_samples = LENGTHS["183 s"]
    blocks = (np.zeros(min(50000, n_samples - i), np.float32) for i in range(0, n_samples, 50000))
    assert [c for c, _ in stream_chunks(blocks, chunk_length, stride_length)] == chunk_audio(n_samples, chunk_length, stride_length)


def test_no_blocks_are_no_chunks():
    assert list(stream_chunks(iter([]))) == [] == chunk_audio(0)


# --- transcripts and memory ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(random_checkpoint):
    return load_model(random_checkpoint(3, tokenizer="base"), device="cpu", dtype="float32")


def test_a_long_file_transcribes_as_its_samples_do_in_memory(decoder, tiny_model, tmp_path, monkeypatch):
    """47 s, streamed in 3.3 s blocks (so chunks straddle blocks), against the same samples as one array."""
    path = write_wav(tmp_path / "long.wav", synthetic_speech(47 * SAMPLE_RATE + 123, seed=4))
    options = dict(language="en", max_new_tokens=6, no_speech_threshold=None, batch_size=3)
    expected = tiny_model.transcribe(load_audio(path), **options)
    monkeypatch.setattr(audio, "_BLOCK_SECONDS", 3.3)
    assert tiny_model.transcribe(path, **options) == expected


@pytest.mark.parametrize("decoder_name", ["builtin", pytest.param("ffmpeg", marks=needs_ffmpeg)])
def test_memory_does_not_grow_with_the_length_of_the_file(tiny_model, tmp_path, monkeypatch, decoder_name):
    """10 minutes of audio (38 MB as float32 samples) with a tiny model: the Python and numpy memory the call
    holds at its peak (tracemalloc; torch's buffers, a batch of windows, are not counted and do not depend on
    the length) stays under 12 MB: about 8 MB, for 1 minute as for 10. Read whole, 10 minutes took 135 MB."""
    from helpers import use_decoder

    use_decoder(monkeypatch, decoder_name)
    rng = np.random.default_rng(0)
    path = write_wav(tmp_path / "ten_minutes.wav", rng.uniform(-0.3, 0.3, 600 * SAMPLE_RATE).astype(np.float32))
    tracemalloc.start()
    try:
        result = tiny_model.transcribe(path, language="en", max_new_tokens=1, no_speech_threshold=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.tokens and peak < 12e6, f"{peak / 1e6:.1f} MB"


# --- progress -------------------------------------------------------------------------------------------------


def test_progress_counts_chunks_against_the_total_the_header_gives(tiny_model, tmp_path):
    path = write_wav(tmp_path / "long.wav", synthetic_speech(LENGTHS["exactly four steps (40 s)"], seed=2))
    calls = []
    tiny_model.transcribe(path, max_new_tokens=2, batch_size=3, progress=lambda *a: calls.append(a))
    assert calls == [(0, 4, 0.0), (3, 4, 35.0), (4, 4, 40.0)]


def test_progress_without_a_known_length_counts_alone(tiny_model):
    samples = synthetic_speech(LENGTHS["exactly four steps (40 s)"], seed=2)
    stream = AudioStream("unknown length", iter(np.array_split(samples, 7)))
    calls = []
    result = tiny_model.transcribe(stream, max_new_tokens=2, batch_size=3, progress=lambda *a: calls.append(a))
    assert calls == [(0, None, 0.0), (3, None, 35.0), (4, None, 40.0)]
    assert result == tiny_model.transcribe(samples, max_new_tokens=2, batch_size=3)


def test_a_header_claiming_years_is_reckoned_not_listed(tiny_model):
    """A corrupt header can claim any duration: the progress total is reckoned from it, never listed chunk by
    chunk (which, for an MP3 claiming five years, took 28 s and 3.7 GB before the first chunk was decoded)."""
    samples = synthetic_speech(LENGTHS["exactly four steps (40 s)"], seed=2)
    stream = AudioStream("claims five years", iter(np.array_split(samples, 7)), duration=154_618_822.0)
    calls = []
    tracemalloc.start()
    try:
        tiny_model.transcribe(stream, max_new_tokens=2, batch_size=3, progress=lambda *a: calls.append(a))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert calls == [(0, 15_461_882, 0.0), (3, 15_461_882, 35.0), (4, 15_461_882, 40.0)]
    assert peak < 50e6, f"{peak / 1e6:.0f} MB"


def test_short_inputs_report_no_progress(tiny_model):
    calls = []
    tiny_model.transcribe(synthetic_speech(20 * SAMPLE_RATE, 1), max_new_tokens=2, progress=lambda *a: calls.append(a))
    assert calls == []


def test_duration_comes_from_the_header_or_the_metadata(tmp_path, monkeypatch):
    path = write_wav(tmp_path / "a.wav", np.zeros(SAMPLE_RATE * 3 + 8000, np.float32))
    assert audio_duration(path) == 3.5
    if subprocess.run(["which", "ffprobe"], capture_output=True).returncode == 0:
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), str(tmp_path / "a.flac")], check=True)
        assert audio_duration(tmp_path / "a.flac") == pytest.approx(3.5, abs=0.01)
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "av", None)
    assert audio_duration(tmp_path / "a.flac" if (tmp_path / "a.flac").exists() else path / "missing") is None


@pytest.fixture
def long_wav(tmp_path):
    return write_wav(tmp_path / "long.wav", synthetic_speech(LENGTHS["exactly four steps (40 s)"], seed=6))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty, flags, drawn", [(True, [], True), (True, ["--quiet"], False), (False, [], False)])
def test_cli_draws_a_progress_bar_only_on_a_terminal_and_not_when_quiet(tiny_model, long_wav, monkeypatch, capsys, tty, flags, drawn):
    from distilwhisper import cli

    monkeypatch.setattr(cli, "load_model", lambda *a, **k: tiny_model)
    err = Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert cli.main([str(long_wav), "--max-new-tokens", "2", "--batch-size", "3", *flags]) == 0
    if drawn:
        assert f"\r{long_wav}: [###############     ] 3/4 chunks, " in err.getvalue()
        assert "[####################] 4/4 chunks, " in err.getvalue() and " audio s/s" in err.getvalue()
        assert "chunks" not in err.getvalue().rsplit("\r\033[K", 1)[1]  # erased once the file is done
    else:
        assert "chunks" not in err.getvalue()
    assert capsys.readouterr().out.strip() == tiny_model.transcribe(long_wav, max_new_tokens=2).text.strip()


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.fixture
def failing_ffmpeg(tmp_path, monkeypatch):
    """An `ffmpeg` that, for files named long*, writes 40 s of samples and then fails as a damaged file makes it
    fail; other files go to the real one."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "ffmpeg"
    script.write_text(f"""#!/bin/sh
case "$*" in *long*) ;; *) exec {shutil.which("ffmpeg")} "$@" ;; esac
head -c 1280000 /dev/zero
echo 'Error while decoding stream #0:0: Invalid data found when processing input' >&2
exit 1
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


@needs_ffmpeg
def test_ffmpeg_failing_part_way_is_a_one_line_error_after_the_blocks_it_gave(failing_ffmpeg, long_wav):
    blocks = stream_audio(long_wav)
    assert sum(map(len, [next(blocks), next(blocks)])) == 20 * SAMPLE_RATE
    with pytest.raises(DistilWhisperError, match="^could not decode .*long.wav with ffmpeg: Error while decoding stream #0:0: Invalid data"):
        list(blocks)


@needs_ffmpeg
def test_cli_a_file_failing_part_way_fails_alone(failing_ffmpeg, tiny_model, long_wav, tmp_path, monkeypatch, capsys):
    from distilwhisper import cli

    short = write_wav(tmp_path / "short.wav", synthetic_speech(5 * SAMPLE_RATE, 1))
    monkeypatch.setattr(cli, "load_model", lambda *a, **k: tiny_model)
    assert cli.main([str(long_wav), str(short), "--max-new-tokens", "2", "--no-filename"]) == 1
    out, err = capsys.readouterr()
    assert out == tiny_model.transcribe(short, max_new_tokens=2).text.strip() + "\n"
    failures = [line for line in err.splitlines() if "error:" in line]
    assert len(failures) == 1 and "long.wav with ffmpeg: Error while decoding stream #0:0" in failures[0]


@needs_ffmpeg
def test_a_stream_closed_early_stops_ffmpeg(tmp_path):
    path = write_wav(tmp_path / "long.wav", np.zeros(120 * SAMPLE_RATE, np.float32))
    blocks = stream_audio(path)
    next(blocks)
    start = time.perf_counter()
    blocks.close()  # ffmpeg, blocked on a full pipe, is killed rather than waited for
    assert time.perf_counter() - start < 5


def _zero_bytes(tmp_path):
    (tmp_path / "zero.wav").write_bytes(b"")
    return tmp_path / "zero.wav"


@pytest.mark.parametrize("make_file, says", [*BAD_FILES.values(), (_zero_bytes, "is empty: no bytes to decode")],
                         ids=[*BAD_FILES.keys(), "zero bytes"])  # fmt: skip
def test_bad_files_are_one_line_errors_before_any_decoding(decoder, tmp_path, make_file, says):
    from distilwhisper.inputs import open_audio

    path = make_file(tmp_path)
    with pytest.raises(DistilWhisperError, match=says) as error:
        open_audio(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


# --- silence and noise, whisper-base -------------------------------------------------------------------------------

# No oracle here but bounds: silence must come out empty (every chunk's no-speech probability is above 0.6), and
# noise in bounded time, at most max_new_tokens per chunk. Ten minutes of silence is 60 chunks; noise is two minutes
# (12 chunks): Whisper hallucinates on noise, each chunk until max_new_tokens, so 10 minutes would cost 5x for nothing
# that 2 do not already show.


@pytest.fixture(scope="module")
def base_model():
    return load_model(BASE_MODEL, device="cpu", dtype="float32")


@needs_shared
def test_a_minute_of_digital_silence_is_empty(base_model, tmp_path):
    """Long enough for several chunks (the long-form path), every one silent."""
    path = write_wav(tmp_path / "silence.wav", np.zeros(60 * SAMPLE_RATE, np.float32))
    result = base_model.transcribe(path, language="en", max_new_tokens=32)
    assert (result.text, result.tokens, result.truncated) == ("", [], False)


@needs_shared
def test_white_noise_finishes_with_at_most_max_new_tokens_per_chunk(base_model, tmp_path):
    path = write_wav(tmp_path / "noise.wav", np.random.default_rng(0).uniform(-0.5, 0.5, 120 * SAMPLE_RATE).astype(np.float32))
    result = base_model.transcribe(path, language="en", max_new_tokens=32)
    assert len(result.tokens) <= len(chunk_audio(120 * SAMPLE_RATE)) * 32
    assert all(token < 50257 for token in result.tokens)  # text only
