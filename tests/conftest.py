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


def save_random_whisper(path: Path, seed: int, shard: bool = False, english_only: bool = False, **overrides) -> Path:
    """A randomly initialised transformers Whisper saved as safetensors (sharded if asked): the oracle's twin.

    english_only: shaped and configured as transformers' converter makes the .en checkpoints: a 51864-token
    vocabulary (GPT-2's, one ordinary token fewer, so every special id is one lower: <|endoftext|> = 50256)
    and openai/whisper-medium.en's generation config (no languages or tasks, <|notimestamps|> forced).
    """
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from distilwhisper.languages import LANGUAGES

    torch.manual_seed(seed)
    eot = 50256 if english_only else 50257
    # init_std well above the default so logits are spread out and greedy argmax has no near-ties.
    config = WhisperConfig(vocab_size=51864 if english_only else 51865, max_source_positions=1500,
                           max_target_positions=448, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
                           decoder_start_token_id=eot + 1, init_std=0.2, **overrides)
    model = WhisperForConditionalGeneration(config).eval()
    # Whisper's real special-token ids, so transformers' generate() builds the usual prompt.
    generation = model.generation_config
    translate, transcribe, no_timestamps = eot + 101, eot + 102, eot + 106
    generation.decoder_start_token_id, generation.no_timestamps_token_id = eot + 1, no_timestamps
    generation.is_multilingual = not english_only
    if english_only:
        generation.forced_decoder_ids, generation.max_length = [[1, no_timestamps]], 448
    else:  # every language, as in whisper-base's generation config, so generate() detects among all of them
        generation.lang_to_id = {f"<|{code}|>": eot + 2 + i for i, code in enumerate(LANGUAGES)}
        generation.task_to_id = {"translate": translate, "transcribe": transcribe}
    generation._from_model_config = False  # else transformers rebuilds it from config.json on load
    generation.suppress_tokens = sorted(torch.randint(0, eot, (40,)).tolist()) + [translate, transcribe]
    if english_only:  # a trained model never follows <|notimestamps|> with timestamps; random weights would, and
        generation.suppress_tokens += list(range(no_timestamps + 1, 51864))  # generate() then cuts segments out
    generation.begin_suppress_tokens = [220, eot]
    model.save_pretrained(path, max_shard_size="2MB" if shard else "10GB")
    return path


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
    import json

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
