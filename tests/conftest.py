"""Fixtures: random checkpoints made once per session, loaded models, and a test run once per audio decoder.

Constants and helpers are in helpers.py; the oracle's random transformers checkpoints in bench/oracle.py.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # oracle.py, and the bench scripts under test

from helpers import BASE_MODEL, TINY_CONFIGS, add_base_tokenizer, add_english_tokenizer, needs_ffmpeg, needs_pyav, use_decoder  # noqa: E402
from oracle import save_random_whisper  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download; the hub path is tested on a local cache


def pytest_configure(config):
    # The log names the slowest tests (CI runs the README's command as it is), so the suite's time stays in view.
    if config.option.durations is None:
        config.option.durations = 30
    # pytest-xdist's workers share the cores rather than each spinning up a thread per core; the commands tests run
    # inherit the same share through OMP_NUM_THREADS.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """random_checkpoint(seed, config="tiny-4x4", tokenizer=None, **options) -> the folder of a random transformers
    Whisper (bench/oracle.py's save_random_whisper: `options` are its own and WhisperConfig fields), made once per
    session for each set of arguments. `tokenizer`: "base" (whisper-base's files) or "english" (shaped as the .en
    checkpoints'), which need ../shared. Shared between tests: copy it before changing it."""
    made: dict[tuple, Path] = {}

    def make(seed: int, config: str = "tiny-4x4", tokenizer: str | None = None, **options) -> Path:
        key = (seed, config, tokenizer, tuple(sorted(options.items())))
        if key not in made:
            if tokenizer is not None and not BASE_MODEL.exists():
                pytest.skip(f"real fixtures not found at {BASE_MODEL} (whisper-base's tokenizer files)")
            path = save_random_whisper(tmp_path_factory.mktemp(f"{config}-{seed}"), seed, **(TINY_CONFIGS[config] | options))
            if tokenizer is not None:
                {"base": add_base_tokenizer, "english": add_english_tokenizer}[tokenizer](path)
            made[key] = path
        return made[key]

    return make


@pytest.fixture(scope="session")
def base_model():
    """whisper-base on the CPU in float32, loaded once: the real checkpoint most real-speech tests decode with."""
    if not (BASE_MODEL / "model.safetensors").exists():
        pytest.skip(f"real fixtures not found at {BASE_MODEL}")
    from distilwhisper import load_model

    return load_model(BASE_MODEL, device="cpu", dtype="float32")


@pytest.fixture
def copied(tmp_path):
    """copied(folder) -> a copy of it in this test's tmp_path, to change freely."""

    def copy(folder: Path) -> Path:
        return Path(shutil.copytree(folder, tmp_path / folder.name))

    return copy


@pytest.fixture(params=["builtin", pytest.param("ffmpeg", marks=needs_ffmpeg), pytest.param("pyav", marks=needs_pyav)])
def decoder(request, monkeypatch) -> str:
    """Run a test once with each decoder: the built-in WAV reader, ffmpeg, PyAV."""
    use_decoder(monkeypatch, request.param)
    return request.param
