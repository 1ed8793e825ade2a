"""Random-weight parity with transformers: the network, the loader and greedy decoding.

Oracle: transformers' WhisperForConditionalGeneration on the very checkpoint we load, built at random
in several shapes (conftest.TINY_CONFIGS), fed random log-mel input.
"""

import pytest
import torch

from conftest import TINY_CONFIGS, hf_greedy_tokens, save_random_whisper
from distilwhisper.decoding import SuppressAtBegin, SuppressTokens, greedy_decode
from distilwhisper.weights import load_generation_defaults, load_whisper

TOLERANCE = 1e-4  # max abs difference, fp32 on CPU
PROMPT = [50258, 50259, 50359, 50363]  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def checkpoint(request, tmp_path_factory):
    from transformers import WhisperForConditionalGeneration

    name = request.param
    seed = sorted(TINY_CONFIGS).index(name)
    # The 2-layer decoder is saved in shards, so the sharded-index path is exercised too.
    path = save_random_whisper(tmp_path_factory.mktemp(name), seed, shard=name == "distil-2dec", **TINY_CONFIGS[name])
    oracle = WhisperForConditionalGeneration.from_pretrained(path).eval()
    return path, oracle, load_whisper(path)


def random_mel(model, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, model.dims.n_mels, 2 * model.dims.n_audio_ctx, generator=generator)


def test_encoder_output_matches_transformers(checkpoint):
    _, oracle, ours = checkpoint
    mel = random_mel(ours, 2, seed=11)
    with torch.no_grad():
        expected = oracle.model.encoder(mel).last_hidden_state
    assert (ours.encoder(mel) - expected).abs().max().item() < TOLERANCE


def test_teacher_forced_logits_match_transformers(checkpoint):
    _, oracle, ours = checkpoint
    mel = random_mel(ours, 2, seed=12)
    tokens = torch.randint(0, 50257, (2, 20), generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        expected = oracle(input_features=mel, decoder_input_ids=tokens).logits
        got = ours(mel, tokens)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < TOLERANCE


def test_cached_steps_equal_one_full_pass(checkpoint):
    """Feeding tokens one at a time through the static cache gives the logits of one teacher-forced pass."""
    _, _, ours = checkpoint
    mel = random_mel(ours, 2, seed=14)
    tokens = torch.randint(0, 50257, (2, 9), generator=torch.Generator().manual_seed(15))
    with torch.no_grad():
        full = ours(mel, tokens)
        ours.decoder.setup_caches(ours.encoder(mel))
        prefix = ours.decoder(tokens[:, :4], torch.arange(4))
        steps = [ours.decoder(tokens[:, i : i + 1], torch.tensor([i])) for i in range(4, 9)]
    assert (torch.cat([prefix, *steps], dim=1) - full).abs().max().item() < TOLERANCE


def test_greedy_tokens_match_transformers_generate(checkpoint):
    path, oracle, ours = checkpoint
    mel = random_mel(ours, 3, seed=16)
    defaults = load_generation_defaults(path)
    rules = [SuppressTokens(defaults.suppress_tokens), SuppressAtBegin(defaults.begin_suppress_tokens)]
    expected = hf_greedy_tokens(oracle, mel, max_new_tokens=40)
    got = greedy_decode(ours, ours.encoder(mel), PROMPT, eot=50257, rules=rules, max_new_tokens=40).tokens
    assert got == expected


def test_suppressed_tokens_follow_transformers(checkpoint):
    """Suppress what the model wants to say: both sides must then pick the same next-best tokens."""
    _, oracle, ours = checkpoint
    mel = random_mel(ours, 2, seed=17)
    free = hf_greedy_tokens(oracle, mel, max_new_tokens=12)
    suppress = sorted({t for row in free for t in row[1:6]})
    begin_suppress = sorted({row[0] for row in free})
    expected = hf_greedy_tokens(oracle, mel, max_new_tokens=12, suppress_tokens=suppress,
                                begin_suppress_tokens=begin_suppress)
    rules = [SuppressTokens(suppress), SuppressAtBegin(begin_suppress)]
    got = greedy_decode(ours, ours.encoder(mel), PROMPT, eot=50257, rules=rules, max_new_tokens=12).tokens
    assert got == expected
    assert not set(suppress) & {t for row in got for t in row}
    assert all(row[0] not in begin_suppress for row in got)
