"""Beam search equals transformers' generate(num_beams=N) token for token, and its ASR pipeline with N beams.

Oracle: transformers on the same weights and input, fp32, CPU. Random weights rarely end a hypothesis, so the
random checkpoints here come in two kinds: as drawn (every hypothesis runs to max_new_tokens) and with the end
token made likely (hypotheses finish at different steps, the finished pool fills and the early stop is tested).
Real speech: whisper-base on the shared files, where 5 beams and greedy differ on some of them.
"""

import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import (
    AUDIO_DIR, BASE_MODEL, EOT, GREEDY, NO_SPEECH, NO_TIMESTAMPS, PROMPT, SOT, SOT_PREV, T0, checkpoint_rules, needs_compiler,
    needs_shared, random_mel, tokens_of, window_passes,
)  # fmt: skip
from oracle import hf_tokens
from test_longform import asr_pipeline
from distilwhisper import DistilWhisperError, TranscribeOptions, load_model
from distilwhisper.audio import SAMPLE_RATE
from distilwhisper.beam_search import BeamSearch, beam_search
from distilwhisper.compiled import compiled_steps
from distilwhisper.decoding import Decoding, TimestampRules
from distilwhisper.weights import load_whisper
from distilwhisper.windows import Engine


def without_timestamps(folder: Path) -> Path:
    """A random model after <|notimestamps|> says timestamps anyway, and generate() then decodes the window again
    from the last one (a real model does not: docs/deviations.md). Suppressed on both sides, the window is one pass."""
    path = folder / "generation_config.json"
    config = json.loads(path.read_text())
    config["suppress_tokens"] = sorted(set(config["suppress_tokens"]) | set(range(T0, 51865)))
    path.write_text(json.dumps(config))
    return folder


def boost_the_end(hf_model, ours, boost: float, seed: int, eot: int = EOT) -> None:
    """Make <|endoftext|> likely, in both models alike: its output row (tied to its embedding) along the mean hidden
    state of a probe pass, times `boost`. Near 1, hypotheses end after a few to a few dozen tokens."""
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        features = hf_model.model.encoder(torch.randn(2, hf_model.config.num_mel_bins, 3000, generator=generator)).last_hidden_state
        probe = torch.randint(0, 50000, (2, 24), generator=generator)
        hidden = hf_model.model.decoder(input_ids=probe, encoder_hidden_states=features, use_cache=False).last_hidden_state
        mean = hidden.mean((0, 1))
        hf_model.proj_out.weight[eot] = boost * mean / mean.norm()
        ours.decoder.embed_tokens.weight[eot] = hf_model.proj_out.weight[eot]


@pytest.fixture(scope="module")
def random_pair(random_checkpoint, tmp_path_factory):
    """random_pair(config, boost) -> (checkpoint folder, transformers model, our model, boost) on the same random
    weights, timestamps suppressed, the end token boosted if asked; made once per module."""
    from transformers import WhisperForConditionalGeneration

    made = {}

    def make(config: str, boost: float | None):
        if (config, boost) not in made:
            folder = tmp_path_factory.mktemp("beams") / config
            folder = without_timestamps(Path(shutil.copytree(random_checkpoint(51, config), folder)))
            hf_model, ours = WhisperForConditionalGeneration.from_pretrained(folder).eval(), load_whisper(folder)
            if boost is not None:
                boost_the_end(hf_model, ours, boost, seed=52)
            made[config, boost] = folder, hf_model, ours, boost
        return made[config, boost]

    return make


# Near 1.0 the boost ends hypotheses after 2 to 24 tokens on these two configs; as drawn, none ends.
ENDING = [("tiny-4x4", 1.0), ("distil-2dec", 1.0)]


@pytest.fixture(params=[("tiny-4x4", None), *ENDING], ids=lambda p: f"{p[0]}-boost{p[1]}")
def any_model(request, random_pair):
    return random_pair(*request.param)


@pytest.fixture(params=ENDING, ids=lambda p: f"{p[0]}-boost{p[1]}")
def ending_model(request, random_pair):
    return random_pair(*request.param)


def our_beams(model, mel, prompts, decoding: Decoding, beams: BeamSearch, step=None):
    model.decoder.setup_caches(model.encoder(mel))
    return beam_search(model, prompts, decoding, beams, step)


@pytest.mark.parametrize("num_beams, max_new_tokens", [(2, 24), (5, 24), (5, 6)])
def test_random_weights_tokens_equal_generate(any_model, num_beams, max_new_tokens):
    """A batch of three: each row its own beams and finished pool; the batch ends when every row is done."""
    folder, hf_model, ours, _ = any_model
    mel = random_mel(ours, 3, seed=53 + max_new_tokens)
    expected = hf_tokens(hf_model, mel, max_new_tokens, num_beams=num_beams)
    decoding = Decoding(EOT, max_new_tokens, checkpoint_rules(folder), NO_SPEECH)
    got = our_beams(ours, mel, [PROMPT] * 3, decoding, BeamSearch(num_beams))
    assert tokens_of(got) == expected
    assert [r.truncated for r in got] == [len(t) == max_new_tokens for t in expected]


def test_the_early_ends_are_exercised(ending_model):
    """The boosted models end hypotheses at different steps, and beams then differ from greedy: the cases above
    test the finished pool and the early stop, not only the running beams."""
    folder, hf_model, ours, _ = ending_model
    mel = random_mel(ours, 3, seed=53 + 24)
    beams = hf_tokens(hf_model, mel, 24, num_beams=5)
    assert any(len(t) < 24 for t in beams) and beams != hf_tokens(hf_model, mel, 24)


@pytest.mark.parametrize("length_penalty, early_stopping", [(0.5, False), (2.0, True), (1.0, "never"), (-1.0, "never")])
def test_length_penalty_and_early_stopping_as_generate_reads_them(ending_model, length_penalty, early_stopping):
    folder, hf_model, ours, _ = ending_model
    mel = random_mel(ours, 2, seed=54)
    expected = hf_tokens(hf_model, mel, 24, num_beams=3, length_penalty=length_penalty, early_stopping=early_stopping)
    decoding = Decoding(EOT, 24, checkpoint_rules(folder), NO_SPEECH)
    assert tokens_of(our_beams(ours, mel, [PROMPT] * 2, decoding, BeamSearch(3, length_penalty, early_stopping))) == expected


def test_a_rows_result_does_not_depend_on_its_batch(ending_model):
    folder, _, ours, _ = ending_model
    mel = random_mel(ours, 3, seed=55)
    decoding = Decoding(EOT, 24, checkpoint_rules(folder), NO_SPEECH)
    batched = tokens_of(our_beams(ours, mel, [PROMPT] * 3, decoding, BeamSearch(4)))
    assert batched == [tokens_of(our_beams(ours, mel[i : i + 1], [PROMPT], decoding, BeamSearch(4)))[0] for i in range(3)]


def test_previous_text_prompt_equals_generate_with_prompt_ids(ending_model):
    folder, hf_model, ours, _ = ending_model
    mel = random_mel(ours, 2, seed=56)
    previous = [SOT_PREV, 1002, 1003, 1004]
    expected = hf_tokens(hf_model, mel, 16, num_beams=5, prompt_ids=torch.tensor(previous))
    decoding = Decoding(EOT, 16, checkpoint_rules(folder), NO_SPEECH, sot_index=len(previous))
    assert tokens_of(our_beams(ours, mel, [previous + PROMPT] * 2, decoding, BeamSearch(5))) == expected


def test_avg_logprob_and_no_speech_prob_are_the_chosen_hypothesis(ending_model):
    """avg_logprob as transformers' _retrieve_avg_logprobs reads it off the winning beam: each token's probability
    among those the rules allow, the end token counted; no_speech_prob at <|startoftranscript|>, once per row."""
    folder, hf_model, ours, _ = ending_model
    mel = random_mel(ours, 2, seed=57)
    decoding = Decoding(EOT, 12, checkpoint_rules(folder), NO_SPEECH)
    got = our_beams(ours, mel, [PROMPT] * 2, decoding, BeamSearch(3))
    out = hf_model.generate(mel, language="en", task="transcribe", max_new_tokens=12, num_beams=3, do_sample=False,
                            return_dict_in_generate=True, output_scores=True)  # fmt: skip
    for row, result in enumerate(got):
        steps = len(result.tokens) + (0 if result.truncated else 1)
        logprobs = [out.scores[t][row].log_softmax(-1) for t in range(steps)]  # the winning beam's rows
        chosen = out.sequences[row, len(PROMPT) : len(PROMPT) + steps]
        expected = sum(lp[token].item() for lp, token in zip(logprobs, chosen.tolist())) / (len(result.tokens) + 1)
        assert result.avg_logprob == pytest.approx(expected, abs=1e-4)
    with torch.no_grad():
        logits = hf_model(mel, decoder_input_ids=torch.tensor([PROMPT] * 2)).logits[:, 0]
    assert [r.no_speech_prob for r in got] == pytest.approx(logits.softmax(-1)[:, NO_SPEECH].tolist(), abs=1e-5)


def test_timestamps_passes_equal_generate(random_checkpoint, num_beams=3):
    """With timestamps a random model often stops mid-segment, and generate() runs a fresh beam search from the
    last timestamp pair: every pass's tokens, one after the other."""
    from transformers import WhisperForConditionalGeneration

    path = random_checkpoint(58, "distil-2dec")
    hf_model, ours = WhisperForConditionalGeneration.from_pretrained(path).eval(), load_whisper(path)
    hf_model.generation_config.max_initial_timestamp_index = 50  # as in Whisper's own checkpoints
    mel = random_mel(ours, 3, seed=59)
    expected = hf_model.generate(mel, language="en", task="transcribe", return_timestamps=True, max_new_tokens=24,
                                 do_sample=False, num_beams=num_beams).tolist()  # fmt: skip
    prompts = [PROMPT[:-1]] * 3
    decoding = Decoding(EOT, 24, (*checkpoint_rules(path), TimestampRules(EOT, NO_TIMESTAMPS, 50)), NO_SPEECH)
    engine, beams = Engine.eager(ours), BeamSearch(num_beams)
    engine.prepare(mel)
    first = engine.decode(prompts, decoding, beams)
    got = tokens_of(window_passes(partial(engine.decode, decoding=decoding, beams=beams), engine.prepare, mel, first,
                                     prompts, T0))  # fmt: skip
    assert got == [[t for t in row if t != EOT] for row in expected]
    assert any(b < a for t in got for a, b in zip(t, t[1:]) if a >= T0 and b >= T0)  # several passes


def test_english_only_tokens_equal_generate(random_checkpoint, tmp_path):
    from transformers import WhisperForConditionalGeneration

    path = random_checkpoint(60, "distil-2dec", english_only=True)
    hf_model, ours = WhisperForConditionalGeneration.from_pretrained(path).eval(), load_whisper(path)
    eot = EOT - 1
    boost_the_end(hf_model, ours, 1.0, seed=61, eot=eot)
    mel = random_mel(ours, 3, seed=62)
    out = hf_model.generate(mel, max_new_tokens=20, do_sample=False, num_beams=4).tolist()
    expected = [[t for t in row if t < eot] for row in out]
    decoding = Decoding(eot, 20, checkpoint_rules(path), NO_SPEECH - 1)
    got = our_beams(ours, mel, [[SOT - 1, NO_TIMESTAMPS - 1]] * 3, decoding, BeamSearch(4))
    assert tokens_of(got) == expected and any(len(t) < 20 for t in expected)


@needs_compiler
def test_compiled_beams_equal_eager_and_reorder_in_place(random_pair):
    """The compiled one-token step reads the caches where beam search reorders them: the same tokens as eager, and
    a second input of the bucket compiles nothing."""
    from torch._dynamo.utils import counters

    folder, _, ours, _ = random_pair(*ENDING[1])
    decoding, steps = Decoding(EOT, 16, checkpoint_rules(folder), NO_SPEECH), compiled_steps(ours)
    counters.clear()
    for seed in (63, 64):
        mel = random_mel(ours, 2, seed)
        eager = tokens_of(our_beams(ours, mel, [PROMPT] * 2, decoding, BeamSearch(3)))
        assert tokens_of(our_beams(ours, mel, [PROMPT] * 2, decoding, BeamSearch(3), steps.decoder)) == eager
        if seed == 63:
            graphs = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == graphs


# --- the options ---------------------------------------------------------------------------------------------------


def test_beam_size_is_num_beams_and_both_must_agree():
    from distilwhisper.options import transcribe_options

    assert transcribe_options(beam_size=5) == transcribe_options(num_beams=5) == TranscribeOptions(num_beams=5)
    assert transcribe_options(beam_size=3, num_beams=3).num_beams == 3
    with pytest.raises(DistilWhisperError, match="num_beams=2 and beam_size=5 name one setting"):
        transcribe_options(num_beams=2, beam_size=5)
    for bad in (0, 2.5, "5", True):
        with pytest.raises(DistilWhisperError, match="num_beams must be"):
            TranscribeOptions(num_beams=bad)


def test_beams_with_an_assistant_are_refused_in_one_line(random_checkpoint):
    path = random_checkpoint(65, "distil-2dec", tokenizer="base")
    model = load_model(path, device="cpu", assistant=path)
    with pytest.raises(DistilWhisperError, match="num_beams=5 needs a model loaded without an assistant"):
        model.transcribe(np.zeros(SAMPLE_RATE, np.float32), num_beams=5)
    assert model.plan(TranscribeOptions(num_beams=1)).beams is None


def test_the_checkpoints_length_penalty_and_early_stopping_are_read(random_checkpoint, copied):
    folder = copied(random_checkpoint(65, "distil-2dec", tokenizer="base"))
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps(config | {"length_penalty": 0.7, "early_stopping": "never"}))
    assert load_model(folder, device="cpu").plan(TranscribeOptions(num_beams=4)).beams == BeamSearch(4, 0.7, "never")
    (folder / "generation_config.json").write_text(json.dumps(config | {"early_stopping": "sometimes"}))
    with pytest.raises(DistilWhisperError, match='early_stopping must be true, false or "never"'):
        load_model(folder, device="cpu")


def test_cli_num_beams_and_beam_size(random_checkpoint, tmp_path, capsys):
    import wave

    from distilwhisper.cli import main

    path = random_checkpoint(65, "distil-2dec", tokenizer="base")
    samples = np.random.default_rng(66).uniform(-0.3, 0.3, 3 * SAMPLE_RATE).astype(np.float32)
    with wave.open(str(tmp_path / "noise.wav"), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(SAMPLE_RATE)
        f.writeframes((samples * 32767).astype("<i2").tobytes())
    expected = load_model(path, device="cpu").transcribe(str(tmp_path / "noise.wav"), language="en", max_new_tokens=8, num_beams=3)
    assert expected.tokens
    common = [str(tmp_path / "noise.wav"), "--model", str(path), "--language", "en", "--max-new-tokens", "8", "--output-format", "json"]
    for beams in (["--num-beams", "3"], ["--beam-size", "3"]):
        capsys.readouterr()
        assert main([*common, *beams]) == 0
        assert json.loads(capsys.readouterr().out)["tokens"] == expected.tokens
    with pytest.raises(SystemExit) as exit_:
        main([*common, "--num-beams", "2", "--beam-size", "3"])
    assert exit_.value.code == 2 and "num_beams=2 and beam_size=3 name one setting" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, "--num-beams", "0"])
    assert "--num-beams must be at least 1, got 0" in capsys.readouterr().err
    assert main([*common, "--num-beams", "2", "--assistant", str(path)]) == 2
    assert "needs a model loaded without an assistant" in capsys.readouterr().err


# --- whisper-base, real speech ---------------------------------------------------------------------------------------

# Of the shared short files, 5 beams and greedy differ on these two; the others are there to mix lengths.
DIFFERING = ["mfa_whisper.wav", "ljspeech_LJ001-0007.wav"]


@pytest.fixture(scope="module")
def real_pair():
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    if not (BASE_MODEL / "model.safetensors").exists():
        pytest.skip(f"real fixtures not found at {BASE_MODEL}")
    hf_model = WhisperForConditionalGeneration.from_pretrained(BASE_MODEL, dtype=torch.float32).eval()
    return load_model(BASE_MODEL, device="cpu", dtype="float32"), hf_model, WhisperProcessor.from_pretrained(BASE_MODEL)


@needs_shared
def test_real_speech_batch_of_mixed_lengths_equals_generate(real_pair, num_beams=5):
    from distilwhisper.audio import load_audio

    ours, hf_model, processor = real_pair
    files = [AUDIO_DIR / "short" / name for name in (*DIFFERING, "jfk_inaugural_11s.wav")]
    samples = [load_audio(f) for f in files]
    features = processor(samples, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    expected = hf_tokens(hf_model, features, 64, num_beams=num_beams)
    got = ours.transcribe(samples, language="en", max_new_tokens=64, num_beams=num_beams)
    assert [r.tokens for r in got] == expected
    assert [r.text for r in got] == processor.batch_decode(expected, skip_special_tokens=True)
    greedy = ours.transcribe(samples, language="en", max_new_tokens=64)
    assert [r.tokens for r in greedy] != expected  # these files tell beams from greedy


def concatenation(names: list[str], seed: int) -> np.ndarray:
    """Shared short files one after another, with pauses of 0.2 to 0.8 s of silence between them."""
    from distilwhisper.audio import load_audio

    rng = np.random.default_rng(seed)
    pieces = []
    for name in names:
        pieces += [load_audio(AUDIO_DIR / "short" / name), np.zeros(int(rng.uniform(0.2, 0.8) * SAMPLE_RATE), np.float32)]
    return np.concatenate(pieces[:-1])


@pytest.fixture(scope="module")
def pipeline():
    return asr_pipeline(BASE_MODEL)


def short_files(seed: int, count: int) -> list[str]:
    names = sorted(p.name for p in (AUDIO_DIR / "short").glob("*.wav"))
    return [names[i] for i in np.random.default_rng(seed).permutation(len(names))[:count]]


def long_audio(source: str) -> np.ndarray:
    """Six shared short files one after another ("concatenation SEED"). The long files (16 and 18 chunks) take
    minutes each in transformers with 5 beams: checked by hand, not in CI (docs/beam-search.md)."""
    seed = int(source.removeprefix("concatenation "))
    return concatenation(short_files(seed, 6), seed)


@needs_shared
@pytest.mark.parametrize("source", ["concatenation 1", "concatenation 2"])
def test_real_long_form_text_equals_the_pipeline_with_five_beams(real_pair, pipeline, source):
    ours = real_pair[0]
    samples = long_audio(source)
    assert len(samples) > 30 * SAMPLE_RATE
    expected = pipeline({"raw": samples, "sampling_rate": SAMPLE_RATE}, generate_kwargs={**GREEDY, "num_beams": 5, "max_new_tokens": 64})
    got = ours.transcribe(samples, language="en", max_new_tokens=64, batch_size=4, num_beams=5)
    assert got.text == expected["text"]
