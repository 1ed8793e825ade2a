"""Random-weight parity with transformers: the network, the loader and greedy decoding.

Oracle: transformers' WhisperForConditionalGeneration on the very checkpoint we load, built at random
in several shapes (helpers.TINY_CONFIGS), fed random log-mel input.
"""

import pytest
import torch

from helpers import PROMPT, TINY_CONFIGS, checkpoint_rules, decode, random_mel, tokens_of
from distilwhisper.decoding import SuppressAtBegin, SuppressTokens
from distilwhisper.weights import load_whisper
from oracle import hf_tokens

TOLERANCE = 1e-4  # max abs difference, fp32 on CPU


@pytest.fixture(scope="module", params=sorted(TINY_CONFIGS))
def checkpoint(request, random_checkpoint):
    from transformers import WhisperForConditionalGeneration

    name = request.param
    # The 2-layer decoder is saved in shards, so the sharded-index path is exercised too.
    path = random_checkpoint(sorted(TINY_CONFIGS).index(name), name, shard=name == "distil-2dec")
    oracle = WhisperForConditionalGeneration.from_pretrained(path).eval()
    return path, oracle, load_whisper(path)


def test_encoder_output_matches_transformers(checkpoint):
    _, oracle, ours = checkpoint
    mel = random_mel(ours, 2, seed=11)
    with torch.no_grad():
        expected = oracle.model.encoder(mel).last_hidden_state
    assert (ours.encoder(mel) - expected).abs().max().item() < TOLERANCE


def test_encoder_layers_receive_a_contiguous_stream(checkpoint):
    """The conv stem's (batch, d_model, time) output is made contiguous as (batch, time, d_model) once, so that
    no residual add or layer norm of the encoder runs on a transposed view (a layout, not a value, so the
    parity tests above cannot see it)."""
    _, _, ours = checkpoint
    layouts = []
    hooks = [layer.register_forward_pre_hook(lambda _, args: layouts.append(args[0].is_contiguous()))
             for layer in ours.encoder.layers]  # fmt: skip
    try:
        with torch.no_grad():
            ours.encoder(random_mel(ours, 2, seed=14))
    finally:
        for hook in hooks:
            hook.remove()
    assert layouts == [True] * len(ours.encoder.layers)


def test_teacher_forced_logits_match_transformers(checkpoint):
    _, oracle, ours = checkpoint
    mel = random_mel(ours, 2, seed=12)
    tokens = torch.randint(0, 50257, (2, 20), generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        expected = oracle(input_features=mel, decoder_input_ids=tokens).logits
        got = ours(mel, tokens)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < TOLERANCE


def stepwise_error(model, seed: int, poison: bool = False) -> float:
    """Max |difference| between the logits of 9 random tokens fed through the static cache (4, then one at a
    time) and those of one teacher-forced pass; `poison`: NaN in the self-attention caches before the steps."""
    mel = random_mel(model, 2, seed=seed)
    tokens = torch.randint(0, 50257, (2, 9), generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        full = model(mel, tokens)
        model.decoder.setup_caches(model.encoder(mel))
        if poison:
            poison_self_caches(model)
        prefix = model.decoder(tokens[:, :4], torch.arange(4), 4)
        steps = [model.decoder(tokens[:, i : i + 1], torch.tensor([i]), i + 1) for i in range(4, 9)]
    return (torch.cat([prefix, *steps], dim=1) - full).abs().max().item()


def poison_self_caches(model) -> None:
    """NaN in every self-attention cache entry: any entry read before it is written spoils the logits."""
    for layer in model.decoder.layers:
        for cache in layer.self_cache.full:
            cache.fill_(float("nan"))


def test_cached_steps_equal_one_full_pass(checkpoint):
    """Feeding tokens one at a time through the static cache gives the logits of one teacher-forced pass."""
    assert stepwise_error(checkpoint[2], seed=14) < TOLERANCE


def test_eager_steps_read_no_cache_entry_past_the_last_written(checkpoint):
    """Told the positions filled so far (as the eager loops tell it), self-attention reads the cache up to the last
    position written and nothing after it (NaN there changes nothing, where attending the whole masked cache would
    give NaN): the logits are a full pass's, and greedy decoding gives the same result as on a clean cache."""
    ours = checkpoint[2]
    assert stepwise_error(ours, seed=29, poison=True) < TOLERANCE

    mel = random_mel(ours, 2, seed=31)
    clean = decode(ours, ours.encoder(mel), PROMPT, 12)
    poison_self_caches(ours)
    poisoned = decode(ours, ours.encoder(mel), PROMPT, 12)
    assert [(r.tokens, r.avg_logprob) for r in poisoned] == [(r.tokens, r.avg_logprob) for r in clean]


def test_greedy_tokens_match_transformers_generate(checkpoint):
    path, oracle, ours = checkpoint
    mel = random_mel(ours, 3, seed=16)
    expected = hf_tokens(oracle, mel, max_new_tokens=40)
    got = tokens_of(decode(ours, ours.encoder(mel), PROMPT, 40, checkpoint_rules(path)))
    assert got == expected


def test_suppressed_tokens_follow_transformers(checkpoint):
    """Suppress what the model wants to say: both sides must then pick the same next-best tokens."""
    _, oracle, ours = checkpoint
    mel = random_mel(ours, 2, seed=17)
    free = hf_tokens(oracle, mel, max_new_tokens=12)
    suppress = sorted({t for row in free for t in row[1:6]})
    begin_suppress = sorted({row[0] for row in free})
    expected = hf_tokens(oracle, mel, max_new_tokens=12, suppress_tokens=suppress,
                                begin_suppress_tokens=begin_suppress)
    rules = (SuppressTokens(suppress), SuppressAtBegin(begin_suppress))
    got = tokens_of(decode(ours, ours.encoder(mel), PROMPT, 12, rules))
    assert got == expected
    assert not set(suppress) & {t for row in got for t in row}
    assert all(row[0] not in begin_suppress for row in got)


@pytest.mark.parametrize("how", ["config-untied", "stored-copy-differs"])
def test_untied_output_projection_matches_transformers(how, random_checkpoint, copied):
    """A checkpoint with its own proj_out.weight, untied by config.json or by differing from the embedding.

    Oracle: transformers, which keeps a stored projection that differs even when the config says tied.
    """
    from safetensors.torch import load_file, save_file
    from transformers import WhisperForConditionalGeneration

    path = copied(random_checkpoint(21, "distil-2dec", tie_word_embeddings=how != "config-untied"))
    if how == "stored-copy-differs":
        tensors = load_file(path / "model.safetensors")
        tensors["proj_out.weight"] = torch.randn(tensors["model.decoder.embed_tokens.weight"].shape) * 0.2
        save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    oracle = WhisperForConditionalGeneration.from_pretrained(path).eval()
    assert not torch.equal(oracle.proj_out.weight, oracle.model.decoder.embed_tokens.weight)
    ours = load_whisper(path)
    mel = random_mel(ours, 2, seed=22)
    tokens = torch.randint(0, 50257, (2, 7), generator=torch.Generator().manual_seed(23))
    with torch.no_grad():
        expected = oracle(input_features=mel, decoder_input_ids=tokens).logits
        got = ours(mel, tokens)
    assert (got - expected).abs().max().item() < TOLERANCE


def test_a_stored_copy_of_the_embedding_stays_tied(random_checkpoint, copied):
    from safetensors.torch import load_file, save_file

    path = copied(random_checkpoint(24, "distil-2dec"))
    tensors = load_file(path / "model.safetensors")
    tensors["proj_out.weight"] = tensors["model.decoder.embed_tokens.weight"].clone()
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    ours = load_whisper(path)
    assert ours.dims.tie_word_embeddings and ours.decoder.proj_out is None


def test_forward_works_in_any_grad_mode_after_decoding(checkpoint):
    """Caches first made for greedy decoding (under inference_mode) are reused by a plain forward, and back."""
    _, _, ours = checkpoint
    mel = random_mel(ours, 2, seed=25)
    tokens = torch.randint(0, 50257, (2, 6), generator=torch.Generator().manual_seed(26))
    decode(ours, ours.encoder(mel), PROMPT, 3)
    with torch.no_grad():
        reference = ours(mel, tokens)
    assert torch.equal(ours(mel, tokens), reference)  # grad mode on: the weights need no grad
    with torch.inference_mode():
        assert torch.equal(ours(mel, tokens), reference)


def test_caches_reused_across_batch_sizes_give_fresh_results(checkpoint):
    """Decoding batches of 2, 3, then 2 again: each as if on a freshly loaded model."""
    path, _, ours = checkpoint
    mels = [random_mel(ours, 2, seed=27), random_mel(ours, 3, seed=28)]

    def tokens(model, mel):
        return tokens_of(decode(model, model.encoder(mel), PROMPT, 15))

    fresh = [tokens(load_whisper(path), mel) for mel in mels]
    assert [tokens(ours, mels[0]), tokens(ours, mels[1]), tokens(ours, mels[0])] == [fresh[0], fresh[1], fresh[0]]


@pytest.fixture(scope="module")
def small_model(random_checkpoint):
    return load_whisper(random_checkpoint(40))


BAD_FORWARD = {  # a change to a good (mel, tokens) pair, and the one-line error Whisper.forward must give
    "float64-mel": (lambda mel, tokens: (mel.double(), tokens), TypeError, r"model's dtype torch\.float32, got torch\.float64"),
    "float-tokens": (lambda mel, tokens: (mel, tokens.float()), TypeError, r"int64 \(or int32\) tensor .* got torch\.float32"),
    "list-tokens": (lambda mel, tokens: (mel, tokens.tolist()), TypeError, r"int64 \(or int32\) tensor .* got list"),
    "1-d-tokens": (lambda mel, tokens: (mel, tokens[0]), ValueError, r"shape \(batch, time\).* got \(4,\)"),
    "empty-tokens": (lambda mel, tokens: (mel, tokens[:, :0]), ValueError, r"non-empty tokens .* got \(2, 0\)"),
    "longer-than-context": (lambda mel, tokens: (mel, tokens.repeat(1, 113)), ValueError, r"time at most 448, got \(2, 452\)"),
    "id-past-vocab": (lambda mel, tokens: (mel, tokens + 51865), ValueError, r"in \[0, 51865\), got ids from 51865"),
    "negative-id": (lambda mel, tokens: (mel, tokens - 1), ValueError, r"in \[0, 51865\), got ids from -1"),
    "batch-mismatch": (lambda mel, tokens: (mel, tokens[:1]), ValueError, r"one row of tokens per mel \(2\), got 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_FORWARD))
def test_forward_names_bad_input(case, small_model):
    """Checked once in Whisper.forward (and the mel's dtype in Encoder.forward), not met inside torch."""
    change, error_type, message = BAD_FORWARD[case]
    mel, tokens = change(random_mel(small_model, 2, seed=41), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(error_type, match=message) as error:
        small_model(mel, tokens)
    assert "\n" not in str(error.value)


def test_decoding_before_setup_caches_says_what_to_call(random_checkpoint):
    """A decoder stepped before it has caches (a library user's first try) names the call it needs."""
    model = load_whisper(random_checkpoint(42))
    with pytest.raises(RuntimeError, match=r"call decoder\.setup_caches\(audio_features\) before decoding"):
        model.decoder(torch.tensor([[50258]]), torch.arange(1))
