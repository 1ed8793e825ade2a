"""Audio handed over in other forms than a 16 kHz file or array: a dict of samples and their rate (the form of
transformers' ASR pipeline and datasets' Audio feature), an audio file's bytes, standard input.

Oracle: the same speech as a 16 kHz WAV path, its transcript or its samples; ffmpeg for PyAV.
"""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import AUDIO_DIR, BASE_MODEL, needs_ffmpeg, needs_pyav, needs_shared, use_decoder

import distilwhisper
from distilwhisper.audio import SAMPLE_RATE, decode_audio, load_audio
from distilwhisper.cli import main
from distilwhisper.inputs import as_waveform

ROOT = Path(__file__).resolve().parents[1]
SPEECH = AUDIO_DIR / "short" / "jfk_inaugural_11s.wav"  # 16 kHz 16-bit PCM


@pytest.fixture(scope="module")
def model():
    return distilwhisper.load_model(BASE_MODEL, device="cpu")


@pytest.fixture(scope="module")
def expected(model):
    return model.transcribe(SPEECH)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """SPEECH in other containers, made with ffmpeg: format -> path. MP3 at 44.1 kHz, so decoders resample it;
    M4A as ffmpeg writes it, with its index after the samples."""
    folder = tmp_path_factory.mktemp("encoded")
    files = {"wav": SPEECH}
    if shutil.which("ffmpeg") is None:  # the tests that need the other files skip
        return files
    for fmt, options in {"flac": [], "mp3": ["-ar", "44100"], "m4a": []}.items():
        files[fmt] = folder / f"speech.{fmt}"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(SPEECH), *options, str(files[fmt])],
                       check=True)  # fmt: skip
    return files


def encoded_file(encoded, fmt: str) -> Path:
    if fmt not in encoded:
        pytest.skip(f"making a {fmt} file needs ffmpeg on PATH")
    return encoded[fmt]


# --- dicts of samples and their rate ----------------------------------------------------------------------------

@needs_shared
@pytest.mark.parametrize("key", ["array", "raw"])
def test_a_44khz_dict_transcribes_like_the_16khz_file(model, expected, key):
    audio = {key: load_audio(SPEECH, sample_rate=44100), "sampling_rate": 44100}

    # Up to 44.1 kHz (with 16-bit rounding) and back differs from the original only in the last bits.
    np.testing.assert_allclose(as_waveform(audio).numpy(), load_audio(SPEECH), rtol=0, atol=2e-3)
    assert model.transcribe(audio).text == expected.text


@needs_shared
def test_the_forms_of_datasets_and_the_pipeline_give_the_same_samples():
    samples = load_audio(SPEECH, sample_rate=44100)
    reference = as_waveform({"array": samples, "sampling_rate": 44100})
    for audio in (
        {"path": "jfk.wav", "array": samples.astype(np.float64), "sampling_rate": np.int64(44100)},  # datasets' Audio
        {"raw": torch.from_numpy(samples), "sampling_rate": 44100, "stride": (0, 0)},  # the pipeline's, extra keys ignored
    ):
        torch.testing.assert_close(as_waveform(audio), reference)


@needs_shared
def test_the_undecoded_form_of_datasets_reads_its_bytes_else_its_path():
    """datasets' Audio(decode=False) gives {"bytes": file bytes or None, "path": ...}: the bytes win when present."""
    reference = as_waveform(SPEECH)
    torch.testing.assert_close(as_waveform({"bytes": SPEECH.read_bytes(), "path": "elsewhere.wav"}), reference)
    torch.testing.assert_close(as_waveform({"bytes": None, "path": str(SPEECH)}), reference)
    with pytest.raises(distilwhisper.DistilWhisperError, match="^dict input: 'bytes' must be an audio file's bytes"):
        as_waveform({"bytes": None})


@needs_shared
def test_a_16khz_dict_is_its_samples_unchanged():
    samples = load_audio(SPEECH)
    torch.testing.assert_close(as_waveform({"array": samples, "sampling_rate": SAMPLE_RATE}), torch.from_numpy(samples))


@needs_shared
def test_a_dict_of_channels_by_samples_is_averaged_to_mono():
    samples = load_audio(SPEECH)
    stereo = np.stack([samples, np.zeros_like(samples)])  # (channels, samples), as datasets gives it

    torch.testing.assert_close(as_waveform({"array": stereo, "sampling_rate": SAMPLE_RATE}), torch.from_numpy(samples / 2))


SAMPLES = np.zeros(SAMPLE_RATE, np.float32)
BAD_DICTS = {  # name -> (dict, what the message says)
    "no-rate": ({"array": SAMPLES}, "expected the samples under 'array' .* got the keys 'array'"),
    "no-samples": ({"sampling_rate": SAMPLE_RATE}, "under 'array' .* got the keys 'sampling_rate'"),
    "empty": ({}, "got the keys none"),
    "array-and-raw": ({"array": SAMPLES, "raw": SAMPLES, "sampling_rate": SAMPLE_RATE}, "got the keys 'array', 'raw'"),
    "list-samples": ({"array": [0.0] * 100, "sampling_rate": SAMPLE_RATE}, "'array' must be a numpy array or a torch tensor, got a list"),
    "string-samples": ({"array": np.array(["a", "b"]), "sampling_rate": SAMPLE_RATE}, "got an array of <U1"),
    "int32-samples": ({"raw": np.zeros(100, np.int32), "sampling_rate": SAMPLE_RATE}, "got torch.int32"),
    "samples-by-channels": ({"array": np.zeros((SAMPLE_RATE, 2), np.float32), "sampling_rate": SAMPLE_RATE},
                            r"shaped \(samples,\) or \(channels, samples\) with 1 or 2 channels, got torch.float32 of shape \(16000, 2\)"),
    "three-channels": ({"array": np.zeros((3, SAMPLE_RATE), np.float32), "sampling_rate": SAMPLE_RATE}, r"of shape \(3, 16000\)"),
    "3-d": ({"array": np.zeros((1, 1, SAMPLE_RATE), np.float32), "sampling_rate": SAMPLE_RATE}, r"of shape \(1, 1, 16000\)"),
    "float-rate": ({"array": SAMPLES, "sampling_rate": 16000.0}, "'sampling_rate' must be a whole number of Hz, got 16000.0"),
    "string-rate": ({"array": SAMPLES, "sampling_rate": "16k"}, "got '16k'"),
    "bool-rate": ({"array": SAMPLES, "sampling_rate": True}, "got True"),
    "zero-rate": ({"array": SAMPLES, "sampling_rate": 0}, "unsupported sample rate 0 Hz .*1000 to 384000 Hz"),
    "rate-too-high": ({"array": SAMPLES, "sampling_rate": 10**6}, "unsupported sample rate 1000000 Hz"),
    "nan-samples": ({"array": np.full(100, np.nan), "sampling_rate": 8000}, "NaN or infinite"),
}  # fmt: skip


@pytest.mark.parametrize("audio, says", BAD_DICTS.values(), ids=BAD_DICTS.keys())
def test_a_malformed_dict_is_a_one_line_error_naming_it(audio, says):
    with pytest.raises(distilwhisper.DistilWhisperError, match=says) as error:
        as_waveform(audio)
    message = str(error.value)
    assert message.startswith("dict input: ") and "\n" not in message


def test_a_dict_is_named_by_its_path_in_messages():
    with pytest.raises(distilwhisper.DistilWhisperError, match="^clip_0001.mp3: 'sampling_rate' must be"):
        as_waveform({"path": "clip_0001.mp3", "array": SAMPLES, "sampling_rate": None})


# --- an audio file's bytes --------------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_bytes_transcribe_like_the_path(model, expected, encoded, fmt):
    data = encoded_file(encoded, fmt).read_bytes()
    assert model.transcribe(data) == expected
    torch.testing.assert_close(as_waveform(bytearray(data)), as_waveform(data), rtol=0, atol=0)


DECODER_FORMATS = [("builtin", "wav")] + [
    pytest.param(decoder, fmt, marks=mark) for decoder, mark in (("ffmpeg", needs_ffmpeg), ("pyav", needs_pyav))
    for fmt in ("wav", "flac", "mp3", "m4a")
]  # fmt: skip


@needs_shared
@pytest.mark.parametrize("decoder, fmt", DECODER_FORMATS)
def test_each_decoder_reads_bytes_as_it_reads_the_file(monkeypatch, encoded, decoder, fmt):
    path = encoded_file(encoded, fmt)
    use_decoder(monkeypatch, decoder)
    # An M4A's index follows its samples: ffmpeg reading a pipe, which cannot seek, would give no samples.
    np.testing.assert_array_equal(decode_audio(path.read_bytes()), load_audio(path))


@needs_shared
@pytest.mark.parametrize("fmt", ["flac", "mp3"])
def test_without_ffmpeg_or_pyav_other_formats_are_an_error_naming_both(monkeypatch, encoded, fmt):
    data = encoded_file(encoded, fmt).read_bytes()
    use_decoder(monkeypatch, "builtin")
    with pytest.raises(distilwhisper.DistilWhisperError, match=r"^could not decode bytes input: not a WAV file") as error:
        decode_audio(data)
    assert "ffmpeg on PATH or PyAV (pip install 'distilwhisper[audio]')" in str(error.value)


@pytest.mark.parametrize("data, says", [(b"", "bytes input is empty"), (b"not audio at all", "could not decode bytes input")])
def test_bad_bytes_are_a_one_line_error(decoder, data, says):
    with pytest.raises(distilwhisper.DistilWhisperError, match=says) as error:
        as_waveform(data)
    assert "\n" not in str(error.value)


@needs_shared
@needs_ffmpeg
@needs_pyav
@pytest.mark.parametrize("fmt, atol", [("flac", 0.0), ("mp3", 1e-4)])
def test_pyav_decodes_as_ffmpeg_does(monkeypatch, encoded, fmt, atol):
    """Both are FFmpeg's libraries, here of different versions: a lossless file decodes to the same samples, and
    MP3, decoded and resampled from 44.1 kHz, to within a few 16-bit steps."""
    reference = load_audio(encoded[fmt])
    use_decoder(monkeypatch, "pyav")

    samples = load_audio(encoded[fmt])

    assert len(samples) == len(reference)
    np.testing.assert_allclose(samples, reference, rtol=0, atol=atol)


@needs_ffmpeg
@needs_pyav
def test_ffmpeg_comes_first_then_pyav_then_the_builtin_reader(monkeypatch):
    def failure() -> str:  # which decoder ran shows in the message
        with pytest.raises(distilwhisper.DistilWhisperError) as error:
            decode_audio(b"not audio at all")
        return str(error.value)

    assert "with ffmpeg" in failure()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "with PyAV" in failure()
    monkeypatch.setitem(sys.modules, "av", None)
    assert "not a WAV file" in failure()


# --- standard input ---------------------------------------------------------------------------------------------


@needs_shared
def test_the_command_reads_standard_input_for_dash(expected):
    run = subprocess.run([sys.executable, "-m", "distilwhisper", "-", "--model", str(BASE_MODEL)],
                         input=SPEECH.read_bytes(), capture_output=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert (run.returncode, run.stdout.decode(), run.stderr.decode()) == (0, expected.text.strip() + "\n", "")


def stdin_of(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@needs_shared
def test_standard_input_is_named_stdin_in_outputs(monkeypatch, tmp_path, expected):
    stdin_of(monkeypatch, SPEECH.read_bytes())
    assert main(["-", "--model", str(BASE_MODEL), "--output-dir", str(tmp_path), "--output-format", "json"]) == 0
    written = json.loads((tmp_path / "stdin.json").read_text())
    assert (written["file"], written["text"]) == ("<stdin>", expected.text.strip())


@needs_shared
def test_bad_standard_input_is_one_line_naming_stdin(monkeypatch, capsys):
    stdin_of(monkeypatch, b"not audio at all")
    assert main(["-", "--model", str(BASE_MODEL)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("distilwhisper: error: could not decode <stdin>")


@needs_shared
def test_long_standard_input_is_streamed_from_a_spooled_copy(monkeypatch, tmp_path, capsys):
    """Over 30 s on standard input: copied into a temporary file a block at a time and streamed from there as a
    file is (never held whole in memory); the same text as from the file, and the copy is gone afterwards."""
    import tempfile
    import wave

    import distilwhisper.cli
    from distilwhisper.audio import AudioStream

    long_file = tmp_path / "long.wav"
    with wave.open(str(long_file), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(SAMPLE_RATE)
        f.writeframes((np.tile(load_audio(SPEECH), 3) * 32767).astype("<i2").tobytes())  # 33 s
    opened, open_audio = [], distilwhisper.cli.open_audio
    monkeypatch.setattr(distilwhisper.cli, "open_audio", lambda *args: opened.append(open_audio(*args)) or opened[-1])
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    options = ["--model", str(BASE_MODEL), "--max-new-tokens", "8"]
    assert main([str(long_file), *options]) == 0
    from_file = capsys.readouterr().out
    stdin_of(monkeypatch, long_file.read_bytes())
    assert main(["-", *options]) == 0
    assert capsys.readouterr().out == from_file and from_file.strip()
    assert isinstance(opened[-1], AudioStream) and opened[-1].name == "<stdin>"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_an_empty_file_says_so(tmp_path):
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(distilwhisper.DistilWhisperError, match=r"empty\.mp3 is empty: no bytes to decode"):
        load_audio(tmp_path / "empty.mp3")


def test_standard_input_can_be_read_only_once(monkeypatch, capsys):
    stdin_of(monkeypatch, SPEECH.read_bytes())
    assert main(["-", "-", "--model", str(BASE_MODEL)]) == 2
    assert capsys.readouterr().err == "distilwhisper: error: standard input (-) can be read only once\n"
