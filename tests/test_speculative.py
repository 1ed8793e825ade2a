"""Speculative decoding gives the main model's plain greedy output, whatever the draft proposes.

Oracles: our own greedy_decode on the same model (tokens, truncation and no-speech identical, average
log-probability within float noise: the verify pass scores several positions at once), and transformers'
generate(..., assistant_model=...) on the same checkpoints (batch 1, text tokens). Drafts: random 2-layer
decoders (with the main model's encoder, with their own, and decoder-only as WhisperForCausalLM saves
them), the main model itself (always right), and copies of it pushed towards or away from the end token.
"""

import json
import shutil
from dataclasses import replace
from functools import partial

import pytest
import torch

from helpers import (AUDIO_DIR, BASE_MODEL, EOT, NO_SPEECH, NO_TIMESTAMPS, PROMPT, T0, TINY_CONFIGS, checkpoint_rules,
                     decode, needs_compiler, needs_shared, tokens_of, window_passes)  # fmt: skip
from distilwhisper import DistilWhisperError, load_audio, load_model, log_mel_spectrogram, pad_or_trim
from distilwhisper.decoding import Decoding, TimestampRules
from distilwhisper.speculative import Assistant, Fixed, Heuristic, load_assistant, speculative_decode
from distilwhisper.weights import load_whisper
from distilwhisper.windows import Engine
from oracle import hf_tokens, save_random_whisper

MAIN = TINY_CONFIGS["tiny-4x4"]  # a 4-layer decoder
DRAFT = MAIN | {"decoder_layers": 2}


def save_with_encoder_of(path, seed, encoder_source, **config):
    """A random transformers Whisper holding `encoder_source`'s encoder: a Distil-Whisper-style student."""
    from transformers import WhisperForConditionalGeneration

    save_random_whisper(path, seed, **config)
    model = WhisperForConditionalGeneration.from_pretrained(path)
    model.model.encoder.load_state_dict(WhisperForConditionalGeneration.from_pretrained(encoder_source).model.encoder.state_dict())
    model.save_pretrained(path)
    return path


def save_decoder_only(full, path):
    """The decoder of a saved Whisper as transformers' WhisperForCausalLM saves one: model.decoder.*, no encoder."""
    from transformers import WhisperForCausalLM, WhisperForConditionalGeneration

    source = WhisperForConditionalGeneration.from_pretrained(full)
    model = WhisperForCausalLM(source.config)
    model.model.decoder.load_state_dict(source.model.decoder.state_dict())
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, random_checkpoint):
    root = tmp_path_factory.mktemp("speculative")
    main = random_checkpoint(0)
    shared = save_with_encoder_of(root / "shared", 1, main, **DRAFT)
    return {
        "main": main,
        "shared": shared,
        "own-encoder": random_checkpoint(2, decoder_layers=2),
        "decoder-only": save_decoder_only(shared, root / "decoder-only"),
    }


@pytest.fixture(scope="module")
def main_model(checkpoints):
    return load_whisper(checkpoints["main"])


@pytest.fixture(scope="module")
def rules(checkpoints):
    return checkpoint_rules(checkpoints["main"])


def random_mel(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, MAIN["num_mel_bins"], 3000, generator=torch.Generator().manual_seed(seed))


def decode_both(model, assistant, mel, rules, max_new_tokens, schedule=Heuristic()):
    """(plain greedy, speculative) on the same input."""
    features = model.encoder(mel)
    plain = decode(model, features, PROMPT, max_new_tokens, rules, no_speech=NO_SPEECH)
    assistant.setup_caches(model.decoder, mel, features)
    fast = speculative_decode(model, assistant, [PROMPT] * len(mel), Decoding(EOT, max_new_tokens, tuple(rules), NO_SPEECH),
                              schedule=schedule)  # fmt: skip
    return plain, fast


def assert_same_result(plain, fast):
    assert tokens_of(fast) == tokens_of(plain)
    assert [r.truncated for r in fast] == [r.truncated for r in plain]
    assert [r.no_speech_prob for r in fast] == [r.no_speech_prob for r in plain]  # the same prompt pass
    assert max(abs(a.avg_logprob - b.avg_logprob) for a, b in zip(fast, plain)) < 1e-5


def rates(results):
    return [r.acceptance_rate for r in results]


def leaning_to_end(model, lean: float):
    """A copy of `model` whose end token's logit is raised (lean > 0) or lowered by about 4 * lean.

    transformers' init leaves the end token's embedding (it is the padding token) at zero, so its logit is
    always 0 and a random model never ends: here it gets 4 * u, u a fixed unit vector, and the final layer
    norm's bias moves by lean * u, which the tied output projection reads back as about 4 * lean.
    """
    copy = load_whisper_like(model)
    direction = torch.randn(copy.dims.d_model, generator=torch.Generator().manual_seed(0))
    direction /= direction.norm()
    with torch.no_grad():
        copy.decoder.embed_tokens.weight[EOT] = 4 * direction
        copy.decoder.layer_norm.bias += lean * direction
    return copy


def load_whisper_like(model):
    import copy

    return copy.deepcopy(model)


def self_draft(model, noise: float = 0.0, seed: int = 0) -> Assistant:
    """The main model's own decoder as the draft, its weights jittered by `noise` (0: always right)."""
    decoder = load_whisper_like(model).decoder
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in decoder.parameters():
            p += noise * torch.randn(p.shape, generator=generator)
    return Assistant(decoder)


@pytest.mark.parametrize("draft", ["shared", "own-encoder", "decoder-only"])
def test_equals_transformers_assisted_generate(checkpoints, main_model, rules, draft):
    from transformers import WhisperForCausalLM, WhisperForConditionalGeneration

    assistant = load_assistant(checkpoints[draft], main_model)
    assert (assistant.encoder is None) == (draft != "own-encoder")  # an equal encoder is not loaded again
    oracle = WhisperForConditionalGeneration.from_pretrained(checkpoints["main"]).eval()
    hf_draft = (WhisperForCausalLM if draft == "decoder-only" else WhisperForConditionalGeneration).from_pretrained(checkpoints[draft]).eval()
    for seed in (21, 22):  # transformers speculates on one sequence at a time
        mel = random_mel(1, seed)
        plain, fast = decode_both(main_model, assistant, mel, rules, max_new_tokens=30)
        assert_same_result(plain, fast)
        assert tokens_of(fast) == hf_tokens(oracle, mel, max_new_tokens=30, assistant_model=hf_draft)
        assert fast[0].acceptance_rate is not None and 0 <= fast[0].acceptance_rate <= 1


def test_batch_rows_finish_at_different_steps(main_model, rules):
    """Each row accepts its own number of proposals and ends at its own step: still plain greedy's rows."""
    model = leaning_to_end(main_model, 2.0)
    plain, fast = decode_both(model, self_draft(model, noise=0.02), random_mel(4, 23), rules, max_new_tokens=40)
    lengths = [len(r.tokens) for r in plain]
    assert len(set(lengths)) > 1 and not all(r.truncated for r in plain), lengths  # the case under test happens
    assert_same_result(plain, fast)
    assert 0 < max(rates(fast)) < 1  # a draft that is sometimes right, sometimes wrong


@pytest.mark.parametrize("lean", [10.0, -10.0], ids=["draft-ends-early", "draft-never-ends"])
def test_draft_biased_about_the_end_token(main_model, rules, lean):
    model = leaning_to_end(main_model, 2.0)
    draft = Assistant(leaning_to_end(model, 2.0 + lean).decoder)
    plain, fast = decode_both(model, draft, random_mel(3, 24), rules, max_new_tokens=40)
    assert not all(r.truncated for r in plain)
    assert_same_result(plain, fast)
    assert max(rates(fast)) < 0.5  # mostly wrong: it ends (or refuses to end) where the model does not


def test_main_model_as_its_own_draft_accepts_everything(main_model, rules):
    plain, fast = decode_both(main_model, self_draft(main_model), random_mel(2, 25), rules, max_new_tokens=40)
    assert_same_result(plain, fast)
    assert rates(fast) == [1.0, 1.0]


@pytest.mark.parametrize("max_new_tokens", [1, 2, 3, 7])
def test_more_proposals_than_tokens_left(main_model, rules, max_new_tokens):
    plain, fast = decode_both(main_model, self_draft(main_model), random_mel(2, 26), rules, max_new_tokens, Heuristic(start=8))
    assert_same_result(plain, fast)
    assert [r.truncated for r in plain] == [True, True]
    # The first token comes from the prompt pass, and a last one left needs no proposal: nothing is proposed then.
    assert rates(fast) == ([None, None] if max_new_tokens <= 2 else [1.0, 1.0])


class BanPreviousToken:
    """A rule that reads each row's history (as the timestamp rules do): never the same token twice in a row."""

    def apply(self, logits, generated):
        if generated.shape[1]:
            logits.scatter_(1, generated[:, -1:], -torch.inf)


def test_rules_see_each_rows_own_history(main_model, rules):
    mel = random_mel(3, 27)
    assistant = self_draft(main_model, noise=0.02)
    without = decode_both(main_model, assistant, mel, rules, max_new_tokens=30)[0]
    plain, fast = decode_both(main_model, assistant, mel, [*rules, BanPreviousToken()], max_new_tokens=30)
    assert tokens_of(plain) != tokens_of(without)  # the rule matters on this input
    assert_same_result(plain, fast)


@pytest.mark.parametrize("schedule", [Heuristic(start=3), Fixed(3), Fixed(3, same_shape=True)], ids=["heuristic", "fixed", "same-shape"])
def test_fixed_and_adaptive_draft_lengths_agree(main_model, rules, schedule):
    plain, fast = decode_both(main_model, self_draft(main_model, noise=0.02), random_mel(2, 28), rules, 40, schedule)
    assert_same_result(plain, fast)


def with_timestamps_both_ways(model, assistant, mel, rules, max_new_tokens):
    """(plain greedy, speculative) passes with Whisper's timestamp rules, as generate(return_timestamps=True)
    runs them. The oracle is plain greedy: test_timestamps holds it equal to transformers' generate. (Not
    generate(..., assistant_model=...): with return_timestamps it strays from its own greedy output, and on
    a random tiny config returns 117 tokens where plain generate returns 17, checked with transformers 5.24.)"""
    prompts = [PROMPT[:3]] * len(mel)  # no <|notimestamps|>
    decoding = Decoding(EOT, max_new_tokens, (*rules, TimestampRules(EOT, NO_TIMESTAMPS, None)), NO_SPEECH)

    def passes(engine):
        engine.prepare(mel)
        first = engine.decode(prompts, decoding)
        return window_passes(partial(engine.decode, decoding=decoding), engine.prepare, mel, first, prompts, T0)

    return passes(Engine.eager(model)), passes(Engine.eager(model, assistant))


@pytest.mark.parametrize("draft", ["self", "shared", "own-encoder"])
def test_timestamps_on(checkpoints, main_model, rules, draft):
    """Every pass speculates; the windows' tokens are plain greedy's passes', and the rate counts them all."""
    assistant = self_draft(main_model) if draft == "self" else load_assistant(checkpoints[draft], main_model)
    mel = random_mel(3, 30)
    plain, fast = with_timestamps_both_ways(main_model, assistant, mel, rules, max_new_tokens=40)
    assert_same_result(plain, fast)
    timestamps = [[t for t in row if t > NO_TIMESTAMPS] for row in tokens_of(plain)]
    assert all(timestamps) and any(b < a for row in timestamps for a, b in zip(row, row[1:]))  # several passes
    assert all(r is not None and 0 <= r <= 1 for r in rates(fast))
    assert draft != "self" or rates(fast) == [1.0] * 3  # always right, in every pass
    assert sum(r.proposed for r in fast) > 0


def test_a_doubting_draft_ends_its_rounds_early(main_model, rules):
    """confidence: a round's drafting stops once the draft doubts its last proposal for every row; same tokens."""
    assistant, mel = self_draft(main_model, noise=0.02), random_mel(2, 32)
    plain, sure = decode_both(main_model, assistant, mel, rules, max_new_tokens=30)
    _, doubting = decode_both(main_model, assistant, mel, rules, 30, Heuristic(confidence=1.01))  # doubts all
    _, trusting = decode_both(main_model, assistant, mel, rules, 30, Heuristic(confidence=0.0))  # doubts none
    assert_same_result(plain, doubting)
    assert trusting == sure
    assert sum(r.proposed for r in doubting) < sum(r.proposed for r in sure)


def test_draft_length_follows_transformers_heuristic():
    heuristic = Heuristic()
    assert [heuristic.next(5, True), heuristic.next(5, False), heuristic.next(1, False), heuristic.next(16, True)] == [7, 4, 1, 16]
    assert (heuristic.start, heuristic.most) == (5, 16) and Fixed(4).next(4, True) == Fixed(4).next(4, False) == 4


def test_assistant_that_does_not_fit_is_refused(checkpoints, main_model, tmp_path):
    other_vocab = shutil.copytree(checkpoints["shared"], tmp_path / "vocab")
    config = json.loads((other_vocab / "config.json").read_text())
    (other_vocab / "config.json").write_text(json.dumps(config | {"vocab_size": 51866}))
    with pytest.raises(DistilWhisperError, match="vocabulary"):
        load_assistant(other_vocab, main_model)
    narrow = save_decoder_only(save_random_whisper(tmp_path / "narrow", 4, **DRAFT | {"d_model": 32}), tmp_path / "narrow-dec")
    with pytest.raises(DistilWhisperError, match="no encoder of its own"):
        load_assistant(narrow, main_model)


@pytest.mark.parametrize("timestamps", [False, True], ids=["", "timestamps"])
@pytest.mark.parametrize("assistant", ["shared", "int8"])
def test_transcribe_with_an_assistant(checkpoints, random_checkpoint, assistant, timestamps):
    """Short inputs and a long one (chunks go through the same batch decoding): the same tokens as without."""
    main = random_checkpoint(0, tokenizer="base")
    generator = torch.Generator().manual_seed(29)
    audio = [0.1 * torch.randn(16000 * seconds, generator=generator).numpy() for seconds in (4, 7, 35)]
    options = dict(max_new_tokens=12, no_speech_threshold=None, batch_size=2, return_timestamps=timestamps)
    plain = load_model(main).transcribe(audio, **options)
    fast = load_model(main, assistant=checkpoints.get(assistant, assistant)).transcribe(audio, **options)
    assert [r.tokens for r in fast] == [r.tokens for r in plain]
    assert [r.segments for r in fast] == [r.segments for r in plain]
    assert not timestamps or all(r.segments for r in plain)
    assert all(r.acceptance_rate is None for r in plain)
    assert all(0 <= r.acceptance_rate <= 1 for r in fast)
    assert assistant != "int8" or min(r.acceptance_rate for r in fast) > 0.5  # the model itself, only rounded


@needs_compiler
def test_compiled_transcription_with_an_assistant(checkpoints, random_checkpoint):
    """load_model(compile=True, assistant=...): the verify passes and the draft's steps run compiled, same tokens."""
    main = random_checkpoint(0, tokenizer="base")
    generator = torch.Generator().manual_seed(31)
    audio = [0.1 * torch.randn(16000 * seconds, generator=generator).numpy() for seconds in (4, 7)]
    options = dict(max_new_tokens=12, no_speech_threshold=None)
    plain = load_model(main).transcribe(audio, **options)
    compiled = load_model(main, compile=True, assistant=checkpoints["shared"])
    assert compiled.engine.steps.compiled and compiled.engine.steps.draft is not None
    fast = compiled.transcribe(audio, **options)
    assert [r.tokens for r in fast] == [r.tokens for r in plain]
    assert all(r.acceptance_rate is not None for r in fast)


def test_the_int8_self_draft_reads_the_main_decoders_caches(main_model, rules):
    """No second copy of the keys and values (nor their computation): the main decoder's caches, shared, the
    self-attention ones included."""
    assistant = load_assistant("int8", main_model)
    plain, fast = decode_both(main_model, assistant, random_mel(2, 33), rules, max_new_tokens=20)
    assert_same_result(plain, fast)
    pairs = list(zip(assistant.decoder.layers, main_model.decoder.layers))
    assert all(d.cross_cache is m.cross_cache and d.self_cache is m.self_cache for d, m in pairs)
    assert min(rates(fast)) > 0.5


class NaNProjection(torch.nn.Module):
    def forward(self, x):
        return torch.full_like(x, float("nan"))


def test_a_draft_sharing_the_self_attention_caches_never_leaves_an_entry_the_main_model_reads(main_model, rules):
    """Every entry the draft writes into the shared caches is rewritten by the verify pass before the main
    model reads it: a draft writing NaN keys and values leaves the output exact (its proposals are junk)."""
    assistant = replace(self_draft(main_model), shares_cross_caches=True, shares_self_caches=True)
    for layer in assistant.decoder.layers:
        layer.self_attn.k_proj = layer.self_attn.v_proj = NaNProjection()
    plain, fast = decode_both(main_model, assistant, random_mel(2, 34), rules, 20, Heuristic(start=3))
    assert_same_result(plain, fast)
    assert sum(r.proposed for r in fast) > 0


def test_int8_self_draft_needs_a_float32_model_on_the_cpu(checkpoints):
    with pytest.raises(DistilWhisperError, match="int8 self-draft runs on the CPU in float32"):
        load_assistant("int8", load_whisper(checkpoints["main"], dtype=torch.float64))


@needs_shared
def test_cli_assistant_reports_the_acceptance_rate(tmp_path, capsys):
    from distilwhisper.cli import main

    audio = AUDIO_DIR / "short" / "jfk_inaugural_11s.wav"
    assert main([str(audio), "--model", str(BASE_MODEL), "--assistant", "int8", "--output-format", "json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] == load_model(BASE_MODEL).transcribe(audio).text.strip()
    assert 0.5 < record["acceptance_rate"] <= 1


# The real checkpoint: whisper-base, and a 2-layer student made from it as Distil-Whisper makes one (the
# teacher's encoder, its first and last decoder layers); untrained, so a poor draft, but an honest one.
def save_base_student(path, decoder_only: bool):
    from safetensors.torch import load_file, save_file

    path.mkdir()
    config = json.loads((BASE_MODEL / "config.json").read_text()) | {"decoder_layers": 2}
    renames = {"model.decoder.layers.0.": "model.decoder.layers.0.", "model.decoder.layers.5.": "model.decoder.layers.1."}
    tensors = {}
    for key, tensor in load_file(BASE_MODEL / "model.safetensors").items():
        if key.startswith("model.decoder.layers."):
            prefix = next((p for p in renames if key.startswith(p)), None)
            if prefix is None:
                continue
            key = renames[prefix] + key.removeprefix(prefix)
        elif decoder_only and key.startswith("model.encoder."):
            continue
        tensors[key] = tensor
    if decoder_only:
        config |= {"architectures": ["WhisperForCausalLM"], "is_encoder_decoder": False}
    (path / "config.json").write_text(json.dumps(config))
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    shutil.copy(BASE_MODEL / "generation_config.json", path)
    return path


@needs_shared
@pytest.mark.parametrize("decoder_only", [False, True], ids=["whole", "decoder-only"])
def test_base_with_a_student_draft_on_real_speech(tmp_path, decoder_only):
    from transformers import WhisperForCausalLM, WhisperForConditionalGeneration

    student = save_base_student(tmp_path / "student", decoder_only)
    model = load_whisper(BASE_MODEL)
    assistant = load_assistant(student, model)
    assert assistant.encoder is None  # the teacher's encoder, checked equal (or absent), serves both
    rules = checkpoint_rules(BASE_MODEL)
    files = sorted((AUDIO_DIR / "short").glob("*.wav"))[::9]  # three speakers and recordings
    mel = torch.stack([log_mel_spectrogram(pad_or_trim(torch.from_numpy(load_audio(f))), 80) for f in files])
    plain, fast = decode_both(model, assistant, mel, rules, max_new_tokens=100)
    assert_same_result(plain, fast)
    assert not any(r.truncated for r in plain)
    assert_same_result(*with_timestamps_both_ways(model, assistant, mel, rules, max_new_tokens=100))
    oracle = WhisperForConditionalGeneration.from_pretrained(BASE_MODEL, dtype=torch.float32).eval()
    hf_draft = (WhisperForCausalLM if decoder_only else WhisperForConditionalGeneration).from_pretrained(student, dtype=torch.float32).eval()
    for i in range(len(files)):
        assert [fast[i].tokens] == hf_tokens(oracle, mel[i : i + 1], 100, assistant_model=hf_draft)


class EndAfter:
    """A rule that ends every sequence after `n` tokens: decodes that end by themselves, on random weights."""

    def __init__(self, n: int):
        self.n = n

    def apply(self, logits, generated):
        if generated.shape[1] >= self.n:
            logits[:, torch.arange(logits.shape[1]) != EOT] = -torch.inf


def test_drafting_stops_once_every_row_proposed_the_end(main_model, rules):
    """A round ends at the draft's end token for every row, not k steps on: proposals after it are never kept."""
    assistant, calls = self_draft(main_model), []
    draft_forward = assistant.decoder.forward
    assistant.decoder.forward = lambda *args: calls.append(1) or draft_forward(*args)
    plain, fast = decode_both(main_model, assistant, random_mel(2, 33), [*rules, EndAfter(10)], 40, Fixed(8))
    assert_same_result(plain, fast)
    assert [len(r.tokens) for r in plain] == [10, 10] and rates(fast) == [1.0, 1.0]
    # The prompt; round 1: 8 proposals (tokens 2-9) from 8 steps, the main model's token 10; round 2: the end, 1 step.
    assert len(calls) == 1 + 8 + 1
