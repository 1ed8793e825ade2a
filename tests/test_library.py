"""The package as a library: batches of any length, scriptable results, types users' checkers see, and the
minimal model built and saved in one's own code."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import distilwhisper
from helpers import AUDIO_DIR, ROOT, needs_shared, read_manifest
from distilwhisper import DistilWhisperError, ModelDims, Whisper, load_model, load_whisper


@pytest.fixture(scope="module")
def tiny(random_checkpoint):
    """A random 4-layer model with whisper-base's tokenizer: cheap to run on many files."""
    return load_model(random_checkpoint(41, tokenizer="base"), device="cpu")


@needs_shared
def test_a_long_list_in_batches_equals_one_by_one(tiny):
    """36 files in batches of 5: the results of one call per file, in input order; no batch bigger than 5 (as the
    encoder sees them), and each batch's files read only when it is decoded."""
    files = [path for path, _ in read_manifest()] * 2
    files = files[:36]
    one_by_one = [tiny.transcribe(path, max_new_tokens=12, no_speech_threshold=None) for path in files]

    events: list = []

    def reading(paths):  # each path as it is taken to be opened
        for path in paths:
            events.append("read")
            yield path

    hook = tiny.model.encoder.register_forward_hook(lambda module, args, output: events.append(len(output)))
    try:
        batched = list(tiny.transcribe_each(reading(files), max_new_tokens=12, no_speech_threshold=None, batch_size=5))
    finally:
        hook.remove()
    # Batched GEMMs round differently in the last bits: tokens and text are equal, log-probabilities close.
    assert [(r.text, r.tokens, r.truncated) for r in batched] == [(r.text, r.tokens, r.truncated) for r in one_by_one]
    assert [r.avg_logprob for r in batched] == pytest.approx([r.avg_logprob for r in one_by_one], abs=1e-4)
    assert [e for e in events if e != "read"] == [5] * 7 + [1]
    assert events[:6] == ["read"] * 5 + [5]  # the first batch is decoded before the sixth file is read


def test_batch_size_below_one_is_a_clear_error(tiny):
    with pytest.raises(DistilWhisperError, match="batch_size must be at least 1"):
        tiny.transcribe([np.zeros(16000, np.float32)], batch_size=0)


@needs_shared
def test_to_dict_is_json_and_holds_every_field(tiny):
    result = tiny.transcribe(AUDIO_DIR / "short" / "jfk_inaugural_11s.wav", language="en", max_new_tokens=4,
                             no_speech_threshold=None)  # fmt: skip
    record = json.loads(json.dumps(result.to_dict()))
    segments: list = []  # filled with return_timestamps=True (test_timestamps)
    words: list = []  # filled with word_timestamps=True (test_words)
    assert record == {"text": result.text, "tokens": result.tokens, "language": "en", "avg_logprob": result.avg_logprob,
                      "no_speech_prob": result.no_speech_prob, "truncated": True, "acceptance_rate": None,
                      "segments": segments, "words": words}  # fmt: skip


def test_the_minimal_model_builds_from_dims_and_loads_a_checkpoint_by_hand(random_checkpoint):
    """The README's library example: dims from config.json, the model on the meta device, tensors assigned."""
    from safetensors.torch import load_file

    path = random_checkpoint(42, "distil-2dec")
    dims = ModelDims.from_config(json.loads((path / "config.json").read_text()))
    with torch.device("meta"):
        model = Whisper(dims)
    tensors = {k.removeprefix("model."): v for k, v in load_file(path / "model.safetensors").items()}
    model.load_state_dict(tensors, assign=True)
    reference = load_whisper(str(path))  # a str works as well as a Path
    mel = torch.randn(1, dims.n_mels, 2 * dims.n_audio_ctx, generator=torch.Generator().manual_seed(43))
    tokens = torch.tensor([[50258, 50259, 50359, 50363, 440]])
    with torch.no_grad():
        assert (model(mel, tokens) - reference(mel, tokens)).abs().max().item() < 1e-5


def test_a_loaded_state_dict_saves_with_safetensors_and_loads_back(random_checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    path = random_checkpoint(44, "distil-2dec")
    model = load_whisper(path)
    assert any(not p.is_contiguous() for p in model.parameters())  # the CPU layout of matmul weights
    save_file(model.state_dict(), tmp_path / "saved.safetensors")
    saved = load_file(tmp_path / "saved.safetensors")
    assert saved.keys() == model.state_dict().keys()
    assert all(torch.equal(saved[name], tensor) for name, tensor in model.state_dict().items())


def test_public_names_and_docstrings():
    for name in ("load_audio", "log_mel_spectrogram", "pad_or_trim", "load_whisper", "load_model", "ModelDims", "Whisper"):
        assert name in distilwhisper.__all__ and getattr(distilwhisper, name).__doc__, name
    assert "from_config" in Whisper.__doc__ and "ModelDims.from_config" in ModelDims.__doc__


USAGE = """import distilwhisper

model = distilwhisper.load_model("base")
one: str = model.transcribe("a.wav").text
many: str = model.transcribe(["a.wav", "b.wav"], batch_size=4)[0].text
wrong: str = model.transcribe("a.wav")[0].text
"""


def test_transcribe_types_check_for_one_input_and_for_a_list(tmp_path):
    """Oracle: mypy on a user's script against the package (py.typed ships with it): the two right uses pass,
    indexing a single result is the one error."""
    pytest.importorskip("mypy")
    (tmp_path / "usage.py").write_text(USAGE)
    # torch and numpy are followed (silently): skipped, they would turn AudioInput into Any.
    run = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports",
                          "--cache-dir", str(tmp_path / "cache"), "usage.py"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env={"MYPYPATH": str(ROOT), "PATH": ""})
    errors = [line for line in run.stdout.splitlines() if ": error:" in line]
    assert errors == ['usage.py:6: error: Value of type "Transcription" is not indexable  [index]'], run.stdout + run.stderr
