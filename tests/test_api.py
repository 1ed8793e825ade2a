"""The Python API on the real base checkpoint: inputs it takes, inputs it refuses, silence."""

import numpy as np
import pytest
import torch

from helpers import AUDIO_DIR, BASE_MODEL, needs_shared
from distilwhisper import DistilWhisperError, Transcription, load_model

pytestmark = needs_shared
JFK = AUDIO_DIR / "short" / "jfk_inaugural_11s.wav"


@pytest.fixture(scope="module")
def model():
    return load_model(BASE_MODEL, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def jfk(model):
    return model.transcribe(JFK)


def test_single_input_gives_one_result_and_a_list_gives_a_list(model, jfk):
    assert isinstance(jfk, Transcription) and "ask not what your country can do for you" in jfk.text
    assert model.transcribe([JFK]) == [jfk]
    assert model.transcribe([]) == []


def test_numpy_torch_and_int16_inputs_agree(model, jfk):
    from distilwhisper.audio import load_audio

    samples = load_audio(JFK)
    assert model.transcribe(samples) == jfk
    assert model.transcribe(torch.from_numpy(samples)) == jfk
    assert model.transcribe((samples * 32768).round().astype(np.int16)).tokens == jfk.tokens


def test_max_new_tokens_cuts_the_transcript(model, jfk):
    assert model.transcribe(JFK, max_new_tokens=5).tokens == jfk.tokens[:5]


def test_silence_gives_an_empty_transcript(model):
    result = model.transcribe(np.zeros(5 * 16000, dtype=np.float32))
    assert result.text == "" and result.tokens == [] and result.no_speech_prob > 0.6


def test_silence_gating_can_be_turned_off(model):
    # Whisper base says " you" on digital silence: the gate, not the decoder, makes it empty.
    assert model.transcribe(np.zeros(5 * 16000, dtype=np.float32), no_speech_threshold=None).tokens != []


def test_speech_is_not_taken_for_silence(model, jfk):
    assert jfk.no_speech_prob < 0.6 and jfk.tokens


@pytest.mark.parametrize(
    "audio, message",
    [
        (np.zeros(0, dtype=np.float32), "the audio is empty"),
        (np.full(16000, np.nan, dtype=np.float32), "NaN or infinite"),
        (np.zeros((2, 16000), dtype=np.float32), "expected 1-D float samples"),
        ({"not": "audio"}, "expected the samples under 'array'"),
        (3.5, "cannot transcribe float input"),
        ("/nonexistent/speech.wav", "audio file not found: /nonexistent/speech.wav"),
    ],
)
def test_bad_audio_is_a_clear_error(model, audio, message):
    with pytest.raises(DistilWhisperError, match=message):
        model.transcribe(audio)


def test_an_input_too_loud_for_the_frontend_is_named_by_its_place_in_a_list(model):
    """The log-mel frontend sees the whole batch; the input at fault is named before it runs."""
    quiet = np.random.default_rng(5).uniform(-0.5, 0.5, 16000).astype(np.float32)
    with pytest.raises(DistilWhisperError, match=r"^input 1 \(ndarray\): the audio is far too loud \(samples up to 5e\+17;"):
        model.transcribe([quiet, quiet * 1e18])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"language": "xx"}, "unknown language 'xx'"),
        ({"task": "summarize"}, "unknown task 'summarize'"),
        ({"max_new_tokens": 445}, "max_new_tokens must be between 1 and 444"),
        ({"max_new_tokens": 0}, "max_new_tokens must be between 1 and 444"),
        ({"language": 5}, "language must be a string, got 5"),
        ({"task": b"transcribe"}, "task must be a string"),
        ({"max_new_tokens": 2.5}, "max_new_tokens must be a whole number, got 2.5"),
        ({"max_new_tokens": "10"}, "max_new_tokens must be a whole number"),
        ({"batch_size": 2.5}, "batch_size must be a whole number, got 2.5"),
        ({"no_speech_threshold": float("nan")}, "no_speech_threshold must be a probability"),
        ({"chunk_length": float("nan")}, "chunk_length must be between 1 and 30"),
    ],
)
def test_bad_options_are_a_clear_error(model, options, message):
    with pytest.raises(DistilWhisperError, match=message):
        model.transcribe(JFK, **options)


def test_bad_dtype_and_device_are_clear_errors():
    with pytest.raises(DistilWhisperError, match="unknown dtype 'float8'"):
        load_model(BASE_MODEL, dtype="float8")
    with pytest.raises(DistilWhisperError, match="^unknown device 'gpu0': choose auto, cpu, cuda or cuda:N$"):
        load_model(BASE_MODEL, device="gpu0")
    with pytest.raises(DistilWhisperError, match="device 'meta' holds no data"):
        load_model(BASE_MODEL, device="meta")


def test_a_backend_torch_lacks_is_refused_in_a_short_line():
    """torch's own reason (its dispatcher's, for a backend this build lacks) is a 1,500-character line."""
    with pytest.raises(DistilWhisperError, match="^device 'mps' is not usable here: ") as error:
        load_model(BASE_MODEL, device="mps")
    assert len(str(error.value)) < 300


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.complex64, torch.float8_e4m3fn, np.float32, 5])
def test_a_dtype_that_is_not_a_float_precision_is_a_clear_error(dtype):
    """Integer, complex and float8 dtypes would load (or not) and fail later in some kernel."""
    with pytest.raises(DistilWhisperError, match="dtype must be torch.float32, torch.float16 or torch.bfloat16"):
        load_model(BASE_MODEL, dtype=dtype)


@pytest.mark.parametrize("audio", [torch.zeros(16000, device="meta"), torch.ones(16000).to_sparse()], ids=["meta", "sparse"])
def test_tensors_without_ordinary_samples_are_a_clear_error(model, audio):
    with pytest.raises(DistilWhisperError, match="expected 1-D float samples at 16 kHz, got a"):
        model.transcribe(audio)


def test_byte_swapped_reversed_and_read_only_arrays_are_accepted(model, jfk):
    from distilwhisper.audio import load_audio

    samples = load_audio(JFK)
    assert model.transcribe(samples.astype(">f4")) == jfk
    assert model.transcribe(samples[::-1].copy()[::-1]) == jfk  # a negative-stride view of the same samples
    assert model.transcribe((samples * 32768).round().astype(">i2")).tokens == jfk.tokens
    samples.flags.writeable = False  # as decoders and memory maps hand them out
    assert model.transcribe(samples) == jfk


def test_concurrent_calls_equal_sequential_calls(model):
    """Four threads share one model (as a web server would): each gets what a call on its own gives."""
    from concurrent.futures import ThreadPoolExecutor

    from helpers import read_manifest

    files = [path for path, _ in read_manifest()[:4]]
    sequential = [model.transcribe(path) for path in files]
    with ThreadPoolExecutor(len(files)) as pool:
        for _ in range(2):
            assert list(pool.map(model.transcribe, files)) == sequential


def test_the_default_token_limit_is_not_hit_by_speech_and_a_low_one_is_reported(model, jfk):
    assert not jfk.truncated
    cut = model.transcribe(JFK, max_new_tokens=5)
    assert cut.truncated and cut.tokens == jfk.tokens[:5]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_on_cpu_is_refused_where_the_cpu_lacks_it(dtype, monkeypatch):
    monkeypatch.setattr("distilwhisper.devices.cpu_has_half_arithmetic", lambda dtype: False)
    with pytest.raises(DistilWhisperError, match=f"no native {dtype} matrix arithmetic.*use float32"):
        load_model(BASE_MODEL, device="cpu", dtype=dtype)


def test_the_half_precision_probe_sees_a_cpu_without_half_units():
    """oneDNN told to use AVX2 at most (a CPU without AVX512-FP16/BF16 or AMX) must make us refuse."""
    import subprocess
    import sys

    code = ("import distilwhisper.devices as t, torch; "
            "print(t.cpu_has_half_arithmetic(torch.float16), t.cpu_has_half_arithmetic(torch.bfloat16))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert run.stdout.split() == ["False", "False"], run.stderr


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_on_cpu_transcribes_like_float32(dtype, jfk):
    """Where the CPU computes half precision natively. Tolerance: the same text as float32 on this clear
    speech (measured: identical tokens for both dtypes on JFK with whisper-base)."""
    from distilwhisper.devices import DTYPES, cpu_has_half_arithmetic

    if not cpu_has_half_arithmetic(DTYPES[dtype]):
        pytest.skip(f"this CPU has no native {dtype} arithmetic, so {dtype} is refused on it")
    half = load_model(BASE_MODEL, device="cpu", dtype=dtype)
    assert half.model.decoder.embed_tokens.weight.dtype == DTYPES[dtype]
    assert half.transcribe(JFK).text == jfk.text
