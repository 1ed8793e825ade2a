"""What the tests share that is not a fixture: where the real data lives and skips that say why when it does not,
Whisper's token ids, the random checkpoints' shapes, and our decoding loops run as the package runs them.

The oracle's side (random transformers checkpoints, transformers' greedy tokens) is bench/oracle.py, which the
benchmarks use too; conftest puts bench/ on the path.
"""

import csv
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from distilwhisper.decoding import Decoding, SuppressAtBegin, SuppressTokens, WindowResult, greedy_decode, joined, passes_over
from distilwhisper.model import Whisper
from distilwhisper.weights import load_generation_defaults

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BASE_MODEL = SHARED / "models" / "whisper-base"
AUDIO_DIR = SHARED / "audio"
JFK = AUDIO_DIR / "short" / "jfk_inaugural_11s.wav"

needs_shared = pytest.mark.skipif(
    not (BASE_MODEL / "model.safetensors").exists(),
    reason=f"real fixtures not found at {SHARED} (../shared beside the repo); random-weight tests still run",
)
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not on PATH")
needs_pyav = pytest.mark.skipif(
    importlib.util.find_spec("av") is None, reason="PyAV is not installed (pip install 'distilwhisper[audio]')"
)
# Inductor compiles C++ on the CPU.
needs_compiler = pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on the CPU needs a C++ compiler (g++)")

# Special token ids of multilingual checkpoints (whisper-base's vocabulary, which the random ones share).
EOT, SOT, EN, TRANSLATE, TRANSCRIBE, SOT_PREV, NO_SPEECH, NO_TIMESTAMPS, T0 = (
    50257, 50258, 50259, 50358, 50359, 50361, 50362, 50363, 50364,
)  # fmt: skip
PROMPT = [SOT, EN, TRANSCRIBE, NO_TIMESTAMPS]  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>
LANGUAGES = list(range(EN, TRANSLATE))  # <|en|> .. <|yue|>
GREEDY = {"language": "en", "task": "transcribe", "num_beams": 1}  # the ASR pipeline's generate_kwargs, greedy

# Random-weight Whisper shapes for parity with transformers: odd sizes on purpose, and a 2-layer
# decoder like distil-large-v2's. The real vocabulary size keeps token ids meaningful.
TINY_CONFIGS = {
    "tiny-4x4": dict(d_model=64, encoder_layers=2, decoder_layers=4, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80),
    "distil-2dec": dict(d_model=96, encoder_layers=3, decoder_layers=2, encoder_attention_heads=6,
                        decoder_attention_heads=6, encoder_ffn_dim=160, decoder_ffn_dim=192, num_mel_bins=80),
    "v3-128mel": dict(d_model=48, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                      decoder_attention_heads=3, encoder_ffn_dim=64, decoder_ffn_dim=96, num_mel_bins=128),
}  # fmt: skip


def read_manifest() -> list[tuple[Path, str]]:
    """(path, reference transcript) for every short file in ../shared/audio."""
    with open(AUDIO_DIR / "manifest.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [(AUDIO_DIR / r["file"], r["reference_text"]) for r in rows if r["file"].startswith("short/")]


def random_mel(model: Whisper, batch: int, seed: int) -> torch.Tensor:
    """(batch, n_mels, 3000) log-mel-shaped noise for `model`."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, model.dims.n_mels, 2 * model.dims.n_audio_ctx, generator=generator)


def checkpoint_rules(path: Path) -> tuple:
    """The checkpoint's suppression rules, as a transcribe call applies them."""
    defaults = load_generation_defaults(path)
    return SuppressTokens(defaults.suppress_tokens), SuppressAtBegin(defaults.begin_suppress_tokens)


def decode(
    model: Whisper, features: torch.Tensor, prompts: list[int] | list[list[int]], max_new_tokens: int, rules: tuple = (),
    eot: int = EOT, no_speech: int | None = None, sot_index: int = 0, step=None,
) -> list[WindowResult]:  # fmt: skip
    """greedy_decode on `features`, the caches filled first: one prompt for every row, or one per row."""
    prompts = prompts if isinstance(prompts[0], list) else [prompts] * len(features)  # type: ignore[list-item]
    model.decoder.setup_caches(features)
    return greedy_decode(model, prompts, Decoding(eot, max_new_tokens, tuple(rules), no_speech, sot_index), step)  # type: ignore[arg-type]


def tokens_of(results: list[WindowResult]) -> list[list[int]]:
    return [r.tokens for r in results]


def window_passes(*args, **kwargs) -> list[WindowResult]:
    """`passes_over` a batch of 30 s windows, each window's passes joined: what a short input's window gives."""
    return [joined(row) for row in passes_over(*args, **kwargs)]


def add_base_tokenizer(path: Path) -> Path:
    """Random checkpoints have no tokenizer files; whisper-base's fit their 51865-token vocabulary."""
    for name in ("tokenizer.json", "vocab.json"):
        shutil.copy(BASE_MODEL / name, path / name)
    return path


def add_english_tokenizer(path: Path) -> Path:
    """Tokenizer files shaped as the .en checkpoints' (transformers' converter on GPT-2's vocabulary), made
    from whisper-base's: its 50256 merged tokens (its id 50256 is an empty placeholder, which GPT-2 lacks),
    then <|endoftext|> = 50256 and every special token one id lower, the languages included. vocab.json
    holds <|endoftext|> too, as GPT-2's does; tokenizer_config.json and friends let transformers load them."""

    def shifted(token_id: int) -> int:
        return token_id - 1 if token_id > 50256 else token_id

    vocab = json.loads((BASE_MODEL / "vocab.json").read_text(encoding="utf-8"))
    vocab = {token: i for token, i in vocab.items() if i < 50256} | {"<|endoftext|>": 50256}
    tokenizer = json.loads((BASE_MODEL / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["model"]["vocab"] = vocab
    for token in tokenizer["added_tokens"]:
        token["id"] = shifted(token["id"])
    for special in tokenizer["post_processor"]["special_tokens"].values():
        special["ids"] = [shifted(i) for i in special["ids"]]
    added = json.loads((BASE_MODEL / "added_tokens.json").read_text(encoding="utf-8"))
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (path / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    (path / "added_tokens.json").write_text(json.dumps({t: shifted(i) for t, i in added.items()}), encoding="utf-8")
    for name in ("merges.txt", "tokenizer_config.json", "special_tokens_map.json", "normalizer.json"):
        shutil.copy(BASE_MODEL / name, path / name)
    return path


def pipeline_ready(path: Path, suppress, **generation) -> Path:
    """A random checkpoint with whisper-base's tokenizer, made loadable by transformers' ASR pipeline too (the rest
    of whisper-base's tokenizer and feature extractor files), with `suppress` added to its suppress_tokens and
    `generation` set in its generation_config.json. The pipeline's tokenizer would keep special tokens a random
    model emits as text; real checkpoints do not emit them, so both sides suppress them."""
    for name in ("tokenizer_config.json", "special_tokens_map.json", "merges.txt", "added_tokens.json",
                 "normalizer.json", "preprocessor_config.json"):  # fmt: skip
        shutil.copy(BASE_MODEL / name, path)
    config = json.loads((path / "generation_config.json").read_text())
    config["suppress_tokens"] = sorted(set(config["suppress_tokens"]) | set(suppress))
    (path / "generation_config.json").write_text(json.dumps(config | generation))
    return path


def use_decoder(monkeypatch, decoder: str) -> None:
    """Decode audio from here on as where `decoder` is the only one: "ffmpeg", "pyav" or "builtin" (the WAV reader)."""
    from distilwhisper import audio

    if decoder != "ffmpeg":
        monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    if decoder != "pyav":
        monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError, as where it is not installed
