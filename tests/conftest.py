"""Shared fixtures: where the real data lives, and skips that say why when it does not."""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download; the hub path is tested on a local cache

SHARED = Path(__file__).resolve().parents[2] / "shared"
BASE_MODEL = SHARED / "models" / "whisper-base"
AUDIO_DIR = SHARED / "audio"

needs_shared = pytest.mark.skipif(
    not (BASE_MODEL / "model.safetensors").exists(),
    reason=f"real fixtures not found at {SHARED} (../shared beside the repo); random-weight tests still run",
)
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not on PATH")
needs_pyav = pytest.mark.skipif(
    importlib.util.find_spec("av") is None, reason="PyAV is not installed (pip install 'distilwhisper[audio]')"
)


def use_decoder(monkeypatch, decoder: str) -> None:
    """Decode audio from here on as where `decoder` is the only one: "ffmpeg", "pyav" or "builtin" (the WAV reader)."""
    from distilwhisper import audio

    if decoder != "ffmpeg":
        monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    if decoder != "pyav":
        monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError, as where it is not installed


@pytest.fixture(params=["builtin", pytest.param("ffmpeg", marks=needs_ffmpeg), pytest.param("pyav", marks=needs_pyav)])
def decoder(request, monkeypatch) -> str:
    """Run a test once with each decoder: the built-in WAV reader, ffmpeg, PyAV."""
    use_decoder(monkeypatch, request.param)
    return request.param


def read_manifest() -> list[tuple[Path, str]]:
    """(path, reference transcript) for every short file in ../shared/audio."""
    import csv

    with open(AUDIO_DIR / "manifest.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [(AUDIO_DIR / r["file"], r["reference_text"]) for r in rows if r["file"].startswith("short/")]


# Random-weight Whisper shapes for parity with transformers: odd sizes on purpose, and a 2-layer
# decoder like distil-large-v2's. The real vocabulary size keeps token ids meaningful.
TINY_CONFIGS = {
    "tiny-4x4": dict(d_model=64, encoder_layers=2, decoder_layers=4, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80),
    "distil-2dec": dict(d_model=96, encoder_layers=3, decoder_layers=2, encoder_attention_heads=6,
                        decoder_attention_heads=6, encoder_ffn_dim=160, decoder_ffn_dim=192, num_mel_bins=80),
    "v3-128mel": dict(d_model=48, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                      decoder_attention_heads=3, encoder_ffn_dim=64, decoder_ffn_dim=96, num_mel_bins=128),
}


def save_random_whisper(path: Path, seed: int, shard: bool = False, **overrides) -> Path:
    """A randomly initialised transformers Whisper saved as safetensors (sharded if asked): the oracle's twin."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    # init_std well above the default so logits are spread out and greedy argmax has no near-ties.
    config = WhisperConfig(vocab_size=51865, max_source_positions=1500, max_target_positions=448,
                           bos_token_id=50257, eos_token_id=50257, pad_token_id=50257,
                           decoder_start_token_id=50258, init_std=0.2, **overrides)
    model = WhisperForConditionalGeneration(config).eval()
    # Whisper's real special-token ids, so transformers' generate(language="en") builds the usual prompt.
    generation = model.generation_config
    generation.decoder_start_token_id, generation.no_timestamps_token_id = 50258, 50363
    generation.lang_to_id, generation.task_to_id = {"<|en|>": 50259}, {"translate": 50358, "transcribe": 50359}
    generation.is_multilingual = True
    generation._from_model_config = False  # else transformers rebuilds it from config.json on load
    generation.suppress_tokens = sorted(torch.randint(0, 50257, (40,)).tolist()) + [50358, 50359]
    generation.begin_suppress_tokens = [220, 50257]
    model.save_pretrained(path, max_shard_size="2MB" if shard else "10GB")
    return path


def add_base_tokenizer(path: Path) -> Path:
    """Random checkpoints have no tokenizer files; whisper-base's fit their 51865-token vocabulary."""
    for name in ("tokenizer.json", "vocab.json"):
        shutil.copy(BASE_MODEL / name, path / name)
    return path


def hf_greedy_tokens(hf_model, input_features, max_new_tokens: int, eos: int = 50257, **generate_kwargs) -> list[list[int]]:
    """The oracle: transformers' Whisper generate, greedy, English transcription, text tokens only.

    Some transformers versions return the prompt too, some only new tokens: strip what is there.
    """
    out = hf_model.generate(input_features, language="en", task="transcribe", max_new_tokens=max_new_tokens,
                            do_sample=False, num_beams=1, **generate_kwargs)
    rows = []
    for row in out.tolist():
        while row and row[0] in (50258, 50259, 50359, 50363):  # sot, <|en|>, <|transcribe|>, <|notimestamps|>
            row = row[1:]
        rows.append(row[: row.index(eos)] if eos in row else row)
    return rows
