"""Compiled steps (torch.compile on the CPU here; CUDA graphs on a GPU) decode exactly what the eager model does.

Oracle: our eager model, itself held equal to transformers by test_model and test_real_parity.
Compilation costs seconds on two cores (about 15 s for a tiny config, about a minute for whisper-base),
so each test compiles one batch bucket once.
"""

import copy

import pytest
import torch
from torch._dynamo.utils import counters

from helpers import AUDIO_DIR, BASE_MODEL, EOT, NO_SPEECH, PROMPT, checkpoint_rules, decode, needs_compiler, needs_shared, random_mel, tokens_of
from distilwhisper import decoding, load_model
from distilwhisper.compiled import batch_bucket, compiled_steps
from distilwhisper.decoding import Decoding
from distilwhisper.speculative import Assistant, speculative_decode
from distilwhisper.weights import load_whisper


def test_batches_are_padded_to_powers_of_two():
    assert [batch_bucket(n) for n in (1, 2, 3, 4, 5, 8, 9, 16, 17)] == [1, 2, 4, 4, 8, 8, 16, 16, 32]


def test_checking_for_the_end_every_few_steps_changes_nothing(random_checkpoint, monkeypatch):
    """On a GPU the loop asks whether all sequences ended every 8 steps only: same result as every step."""
    model = load_whisper(random_checkpoint(35, "distil-2dec"))
    features = model.encoder(random_mel(model, 3, seed=36))
    # Random weights rarely say <|endoftext|>: let a token the first row says at its 6th step end sequences.
    end = decode(model, features, PROMPT, 6)[0].tokens[5]
    every_step = decode(model, features, PROMPT, 30, eot=end, no_speech=NO_SPEECH)
    monkeypatch.setitem(decoding.END_CHECK_EVERY, "cpu", 8)
    every_eighth = decode(model, features, PROMPT, 30, eot=end, no_speech=NO_SPEECH)
    assert every_eighth == every_step
    assert len(every_step[0].tokens) <= 5 and not all(r.truncated for r in every_step)  # rows ended between two checks


def test_caches_are_allocated_once_for_the_largest_batch(random_checkpoint):
    """Smaller batches use the first rows of the caches: the same memory, and for each batch size the same
    tensors every time (a compiled step or a CUDA graph over them stays valid); results as from fresh caches."""
    path = random_checkpoint(37, "distil-2dec")
    model = load_whisper(path)
    mel = random_mel(model, 4, seed=38)
    fresh = [decode(load_whisper(path), model.encoder(m), PROMPT, 12, no_speech=NO_SPEECH) for m in (mel, mel[1:3])]

    def decode_and_look(m):
        result = decode(model, model.encoder(m), PROMPT, 12, no_speech=NO_SPEECH)
        cache = model.decoder.layers[-1].cross_cache
        return result, cache.k, cache.full[0].data_ptr()

    four, k4, address = decode_and_look(mel)
    two, k2, address2 = decode_and_look(mel[1:3])
    again, k4_again, address4 = decode_and_look(mel)
    assert [four, two] == fresh and again == four
    assert k4_again is k4 and k2.shape[0] == 2 and k2.data_ptr() == k4.data_ptr() == address == address2 == address4


@needs_compiler
def test_the_encoder_compiles_as_one_graph_equal_to_eager(random_checkpoint):
    """compiled_steps compiles the encoder on a GPU only (on the CPU it ran slower compiled), in one graph, as a
    CUDA graph needs; this holds it to that here, where no GPU is. fp32: the same sums in another order."""
    model = load_whisper(random_checkpoint(39, "distil-2dec"))
    mel = random_mel(model, 2, seed=40)
    compiled = torch.compile(model.encoder, fullgraph=True, dynamic=False)
    with torch.no_grad():
        assert (compiled(mel) - model.encoder(mel)).abs().max().item() < 1e-4


@needs_compiler
def test_compiled_greedy_tokens_equal_eager_without_recompiling(random_checkpoint):
    """Two fresh inputs of one bucket: the same tokens as eager, and the second compiles nothing. Then the
    k-token step a speculative loop verifies with: the logits of the eager decoder."""
    path = random_checkpoint(31, "distil-2dec")
    model = load_whisper(path)
    rules = checkpoint_rules(path)
    steps = compiled_steps(model)

    def decode_with(mel, compiled):
        encoder, step = (steps.encoder, steps.decoder) if compiled else (model.encoder, model.decoder)
        return tokens_of(decode(model, encoder(mel), PROMPT, 24, rules, step=step))

    counters.clear()
    for seed in (32, 33):
        mel = random_mel(model, 4, seed)
        assert decode_with(mel, compiled=True) == decode_with(mel, compiled=False)
        if seed == 32:
            graphs = counters["stats"]["unique_graphs"]
    assert graphs == 1  # the one-token step; on the CPU the encoder stays eager (compiled_steps)
    assert counters["stats"]["unique_graphs"] == graphs
    # Another bucket compiles its own graphs; coming back to the first one compiles nothing more.
    assert decode_with(mel[:2], compiled=True) == decode_with(mel[:2], compiled=False)
    graphs = counters["stats"]["unique_graphs"]
    assert decode_with(mel, compiled=True) == decode_with(mel, compiled=False)
    assert counters["stats"]["unique_graphs"] == graphs

    draft = torch.randint(0, 50257, (4, 3), generator=torch.Generator().manual_seed(34))
    positions = torch.arange(len(PROMPT), len(PROMPT) + 3)
    with torch.inference_mode():
        model.decoder.setup_caches(model.encoder(mel))
        model.decoder(torch.tensor([PROMPT] * 4), torch.arange(len(PROMPT)))
        compiled = steps.decoder(draft, positions, None).clone()
        eager = model.decoder(draft, positions)  # rewrites the same cache positions with the same values
    assert (compiled - eager).abs().max().item() < 1e-4


@needs_shared
@needs_compiler
def test_compiled_transcription_equals_eager_on_real_speech():
    """whisper-base on three real files (one bucket of 4, the last file repeated to fill it): same tokens."""
    files = [str(p) for p in sorted((AUDIO_DIR / "short").glob("*.wav"))[:3]]
    eager = load_model(BASE_MODEL, device="cpu", dtype="float32").transcribe(files, max_new_tokens=24)
    compiled = load_model(BASE_MODEL, device="cpu", dtype="float32", compile=True).transcribe(files, max_new_tokens=24)
    assert [r.tokens for r in compiled] == [r.tokens for r in eager]
    assert all(r.tokens for r in eager)
    assert [r.avg_logprob for r in compiled] == pytest.approx([r.avg_logprob for r in eager], abs=1e-4)


@needs_compiler
def test_compiled_speculation_equals_plain_greedy_without_recompiling(random_checkpoint):
    """Speculation over compiled steps: verify passes of k + 1 tokens and the draft's steps are graphs too;
    k stays fixed, so a second input of the bucket compiles nothing and the tokens are still plain greedy's."""
    path = random_checkpoint(41, "distil-2dec")
    model = load_whisper(path)
    rules = checkpoint_rules(path)
    draft = copy.deepcopy(model.decoder)  # jittered: a draft that is sometimes right, sometimes wrong
    generator = torch.Generator().manual_seed(44)
    with torch.no_grad():
        for parameter in draft.parameters():
            parameter += 0.02 * torch.randn(parameter.shape, generator=generator)
    assistant = Assistant(draft)
    steps = compiled_steps(model, assistant)

    counters.clear()
    for seed in (42, 43):
        features = model.encoder(random_mel(model, 2, seed))
        plain = decode(model, features, PROMPT, 20, rules, no_speech=NO_SPEECH)
        assistant.setup_caches(model.decoder, features, features)
        fast = speculative_decode(model, assistant, [PROMPT] * 2, Decoding(EOT, 20, rules, NO_SPEECH), steps.decoder, steps.draft,
                                  steps.schedule)  # fmt: skip
        assert tokens_of(fast) == tokens_of(plain) and [r.truncated for r in fast] == [r.truncated for r in plain]
        assert 0 < max(r.acceptance_rate for r in fast) < 1
        if seed == 42:
            graphs = counters["stats"]["unique_graphs"]
    assert graphs == 3  # the verify pass, the draft's first step (two tokens) and its one-token step
    assert counters["stats"]["unique_graphs"] == graphs


def test_compiling_leaves_room_for_every_bucket_k_and_model(random_checkpoint):
    """Each compiled shape of a decoder (bucket, k, the draft's, another model's) is one more dynamo entry of the one
    Decoder.forward: at dynamo's default limit of 8 a server with a few buckets and an assistant is refused."""
    compiled_steps(load_whisper(random_checkpoint(45, "distil-2dec")))  # compiles nothing until called
    assert torch._dynamo.config.recompile_limit >= 64
