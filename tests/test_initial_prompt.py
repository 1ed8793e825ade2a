"""An initial prompt: previous text the decoder reads before the audio's own prompt.

Oracle: transformers' generate(..., prompt_ids=...), its processor's get_prompt_ids and its ASR pipeline with
prompt_ids in generate_kwargs, on the same weights: random tiny checkpoints fed random log-mel input (always),
and whisper-base on real speech. Each prompt is checked to change the transcript, so that a prompt dropped
on the way fails the test.
"""

import pytest
import torch

from helpers import (AUDIO_DIR, BASE_MODEL, EOT, GREEDY, NO_SPEECH, PROMPT, SOT_PREV, add_base_tokenizer, checkpoint_rules,
                     decode, needs_shared, read_manifest, tokens_of)  # fmt: skip
from oracle import hf_tokens
from distilwhisper import DistilWhisperError, TranscribeOptions, load_audio, load_model, log_mel_spectrogram, pad_or_trim
from distilwhisper.audio import SAMPLE_RATE
from distilwhisper.cli import main
from distilwhisper.decoding import Decoding
from distilwhisper.speculative import speculative_decode
from distilwhisper.weights import load_whisper
from test_longform import LONG_FILES, asr_pipeline
from test_speculative import self_draft
# Lower case and no punctuation: whisper-base follows the style, so every short file's transcript changes.
STYLE = "and so my fellow americans no punctuation here all lowercase"


# --- random weights: greedy_decode and speculative_decode with previous text ----------------------------------


@pytest.fixture(scope="module")
def tiny(random_checkpoint):
    from transformers import WhisperForConditionalGeneration

    path = random_checkpoint(41)
    return WhisperForConditionalGeneration.from_pretrained(path).eval(), load_whisper(path), checkpoint_rules(path), path


def previous_text(length: int, seed: int) -> list[int]:
    return [SOT_PREV, *torch.randint(0, EOT, (length,), generator=torch.Generator().manual_seed(seed)).tolist()]


def random_mel(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 80, 3000, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("length", [1, 17])
def test_tokens_and_no_speech_equal_generate_with_prompt_ids(tiny, length):
    oracle, ours, rules, _ = tiny
    mel, previous = random_mel(3, seed=length), previous_text(length, seed=length)
    features = ours.encoder(mel)
    got = decode(ours, features, previous + PROMPT, 30, rules, no_speech=NO_SPEECH, sot_index=len(previous))
    assert tokens_of(got) == hf_tokens(oracle, mel, max_new_tokens=30, prompt_ids=torch.tensor(previous))
    assert tokens_of(got) != tokens_of(decode(ours, features, PROMPT, 30, rules))

    # openai/whisper and transformers read <|nospeech|> at <|startoftranscript|>, which the previous text moved.
    with torch.no_grad():
        logits = oracle(input_features=mel, decoder_input_ids=torch.tensor([previous + PROMPT] * 3)).logits
    at_sot, at_start = (logits[:, i].softmax(dim=-1)[:, NO_SPEECH] for i in (len(previous), 0))
    assert torch.allclose(torch.tensor([r.no_speech_prob for r in got]), at_sot, rtol=1e-4, atol=0)  # random weights: tiny probabilities
    assert not torch.allclose(at_sot, at_start, rtol=0.1, atol=0)  # the position matters


def test_speculation_with_previous_text_equals_greedy(tiny):
    _, ours, rules, _ = tiny
    mel, previous = random_mel(2, seed=5), previous_text(9, seed=5)
    features = ours.encoder(mel)
    plain = decode(ours, features, previous + PROMPT, 25, rules, no_speech=NO_SPEECH, sot_index=len(previous))
    draft = self_draft(ours, noise=0.05, seed=1)  # often wrong, so rounds are rolled back past the prompt's positions
    draft.setup_caches(ours.decoder, mel, features)
    fast = speculative_decode(ours, draft, [previous + PROMPT] * 2, Decoding(EOT, 25, rules, NO_SPEECH, len(previous)))
    assert [(r.tokens, r.no_speech_prob, r.truncated) for r in fast] == [(r.tokens, r.no_speech_prob, r.truncated) for r in plain]
    assert 0 < sum(r.accepted for r in fast) < sum(r.proposed for r in fast)


@needs_shared  # for the tokenizer files
def test_a_detected_language_goes_after_the_previous_text(tiny, random_checkpoint):
    """Detection reads <|startoftranscript|> alone (as generate() does); the language it finds, here not English,
    then follows <|startoftranscript|>, past the previous text."""
    oracle, _, _, _ = tiny
    ours = load_model(random_checkpoint(41, tokenizer="base"), device="cpu")  # tiny's, with whisper-base's tokenizer
    waveform = torch.randn(5 * SAMPLE_RATE, generator=torch.Generator().manual_seed(3)) * 0.1
    got = ours.transcribe(waveform, initial_prompt=STYLE, max_new_tokens=20, no_speech_threshold=None)
    mel = log_mel_spectrogram(pad_or_trim(waveform))[None]  # the same input for the oracle
    prompt_ids = torch.tensor(ours.tokenizer.previous_text(STYLE))
    out = oracle.generate(mel, task="transcribe", prompt_ids=prompt_ids, max_new_tokens=20, num_beams=1, do_sample=False)
    row = out[0].tolist()
    assert row[0] < EOT  # transformers 5 returns the generated tokens only
    assert got.language != "en" and got.tokens == (row[: row.index(EOT)] if EOT in row else row)


# --- whisper-base, real speech ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base():
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    oracle = WhisperForConditionalGeneration.from_pretrained(BASE_MODEL, dtype=torch.float32).eval()
    return load_model(BASE_MODEL, device="cpu", dtype="float32"), oracle, WhisperProcessor.from_pretrained(BASE_MODEL)


@pytest.fixture(scope="module")
def speech():
    return [load_audio(path) for path, _ in read_manifest()[:8]]


@needs_shared
@pytest.mark.parametrize("text", [STYLE, "  Glossary: Dashwood, Norland, Elinor, Marianne.\n", ""])
def test_previous_text_is_encoded_as_get_prompt_ids(base, text):
    ours, _, processor = base
    assert ours.tokenizer.previous_text(text) == processor.get_prompt_ids(text).tolist()


@needs_shared
def test_batched_real_speech_equals_generate_with_prompt_ids(base, speech):
    ours, oracle, processor = base
    features = processor.feature_extractor(speech, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    expected = hf_tokens(oracle, features, max_new_tokens=128, prompt_ids=torch.from_numpy(processor.get_prompt_ids(STYLE)))
    got = ours.transcribe(speech, language="en", max_new_tokens=128, initial_prompt=STYLE)
    plain = ours.transcribe(speech, language="en", max_new_tokens=128)
    for i, (result, tokens) in enumerate(zip(got, expected)):
        assert result.tokens == tokens, i
        assert result.text == processor.batch_decode([tokens], skip_special_tokens=True)[0], i
    assert all(g.tokens != p.tokens for g, p in zip(got, plain))


@needs_shared
def test_detected_language_with_a_prompt_equals_generate(base, speech):
    """No language: detection reads <|startoftranscript|> alone (as generate() does), then the detected language
    goes right after <|startoftranscript|>, past the previous text."""
    ours, oracle, processor = base
    waveform = speech[0]
    features = processor.feature_extractor([waveform], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    prompt_ids = torch.from_numpy(processor.get_prompt_ids(STYLE))
    out = oracle.generate(features, task="transcribe", prompt_ids=prompt_ids, num_beams=1, do_sample=False)
    row = out[0].tolist()
    row = row[len(prompt_ids) :] if row[: len(prompt_ids)] == prompt_ids.tolist() else row  # as hf_tokens
    while row[0] in (50258, 50259, 50359, 50363):
        row = row[1:]
    got = ours.transcribe(waveform, initial_prompt=STYLE, no_speech_threshold=None)
    assert got.language == "en"
    assert got.tokens == (row[: row.index(EOT)] if EOT in row else row)


@needs_shared
def test_segments_with_a_prompt_equal_the_pipeline(base):
    from transformers import pipeline

    from test_timestamps import pipeline_segments

    ours, _, processor = base
    samples = load_audio(AUDIO_DIR / "short" / "jfk_inaugural_11s.wav")
    pipe = pipeline("automatic-speech-recognition", model=str(BASE_MODEL), device="cpu", dtype=torch.float32)
    prompt_ids = torch.from_numpy(processor.get_prompt_ids(STYLE))
    expected = pipe({"raw": samples, "sampling_rate": SAMPLE_RATE}, return_timestamps=True,
                    generate_kwargs={**GREEDY, "prompt_ids": prompt_ids})  # fmt: skip
    got = ours.transcribe(samples, language="en", return_timestamps=True, initial_prompt=STYLE)
    assert got.segments == pipeline_segments(expected, round(len(samples) / SAMPLE_RATE, 2))
    assert got.text == expected["text"] and got.text != ours.transcribe(samples, language="en", return_timestamps=True).text


@needs_shared
def test_long_form_with_a_prompt_equals_the_pipeline(base):
    """Each chunk is decoded after the same previous text, as the pipeline passes prompt_ids to each generate()."""
    ours, _, processor = base
    samples = load_audio(AUDIO_DIR / "long" / LONG_FILES[0])[: 50 * SAMPLE_RATE]  # five 15 s chunks
    prompt_ids = torch.from_numpy(processor.get_prompt_ids(STYLE))
    expected = asr_pipeline(BASE_MODEL)({"raw": samples, "sampling_rate": SAMPLE_RATE},
                                        generate_kwargs={**GREEDY, "max_new_tokens": 128, "prompt_ids": prompt_ids})  # fmt: skip
    got = ours.transcribe(samples, language="en", max_new_tokens=128, batch_size=4, chunk_length=15, initial_prompt=STYLE)
    assert got.text == expected["text"]
    assert got.text != ours.transcribe(samples, language="en", max_new_tokens=128, batch_size=4, chunk_length=15).text


@needs_shared
def test_int8_self_draft_with_a_prompt_equals_plain_greedy(speech):
    plain = load_model(BASE_MODEL, device="cpu").transcribe(speech[:4], language="en", initial_prompt=STYLE)
    fast = load_model(BASE_MODEL, device="cpu", assistant="int8").transcribe(speech[:4], language="en", initial_prompt=STYLE)
    assert [r.tokens for r in fast] == [r.tokens for r in plain]
    assert all(r.acceptance_rate is not None for r in fast)


# --- limits and bad input -------------------------------------------------------------------------------------


@needs_shared
def test_a_prompt_longer_than_half_the_decoder_is_refused(base, speech):
    """Whisper was trained with at most 223 tokens of previous text (openai/whisper keeps the last 223 of a longer
    prompt): 223 are decoded, 224 are refused by name, before any audio is read."""
    ours = base[0]
    words = lambda n: " ".join(["word"] * n)  # noqa: E731 - " word" is one token
    assert len(ours.tokenizer.previous_text(words(223))) == 224
    assert ours.transcribe(speech[0], language="en", max_new_tokens=5, initial_prompt=words(223)).tokens
    with pytest.raises(DistilWhisperError, match="^initial_prompt must be at most 223 tokens long, got 224"):
        ours.transcribe("no such file.wav", initial_prompt=words(224))


@needs_shared
def test_max_new_tokens_counts_the_prompt(base):
    """The decoder's 448 positions hold the previous text, the 4-token prompt and what is generated."""
    ours = base[0]
    previous = ours.tokenizer.previous_text(STYLE)
    room = 448 - len(previous) - 4
    plan = ours.plan(TranscribeOptions("en", "transcribe", room, initial_prompt=STYLE))
    assert plan.prompt()[: len(previous)] == previous and plan.decoding.max_new_tokens == room
    with pytest.raises(DistilWhisperError, match=f"max_new_tokens must be between 1 and {room} "):
        ours.plan(TranscribeOptions("en", "transcribe", room + 1, initial_prompt=STYLE))
    assert ours.plan(TranscribeOptions("en", "transcribe", initial_prompt=STYLE)).decoding.max_new_tokens == room


@needs_shared  # for the tokenizer files
@pytest.mark.parametrize("words", [5, 222])
def test_default_max_new_tokens_equals_generates_after_a_long_prompt(tiny, copied, words):
    """generate() counts max_length after at most 223 prompt tokens: with max_length 100, a 227-token prompt
    (222 words) leaves 96 new tokens, a 10-token one 100. The random model never ends: the limit stops both."""
    import json

    from transformers import WhisperForConditionalGeneration

    path = copied(tiny[3])
    generation = json.loads((path / "generation_config.json").read_text())
    (path / "generation_config.json").write_text(json.dumps(generation | {"max_length": 100}))
    ours, oracle = load_model(add_base_tokenizer(path), device="cpu"), WhisperForConditionalGeneration.from_pretrained(path).eval()
    text = " ".join(["word"] * words)  # " word" is one token
    prompt_ids = torch.tensor(ours.tokenizer.previous_text(text))
    row = oracle.generate(random_mel(1, seed=words), language="en", task="transcribe", prompt_ids=prompt_ids,
                          num_beams=1, do_sample=False)[0].tolist()  # fmt: skip
    assert EOT not in row and row[0] < EOT  # the generated tokens only, every one of them
    assert ours.plan(TranscribeOptions("en", "transcribe", initial_prompt=text)).decoding.max_new_tokens == len(row)


@needs_shared
@pytest.mark.parametrize("call", ["transcribe", "options"])
def test_a_prompt_that_is_not_text_is_refused(base, call):
    with pytest.raises(DistilWhisperError, match="initial_prompt must be a string, got 42"):
        if call == "transcribe":
            base[0].transcribe("no such file.wav", initial_prompt=42)
        else:
            TranscribeOptions("en", initial_prompt=42)


@needs_shared
def test_cli_initial_prompt(capsys):
    jfk = str(AUDIO_DIR / "short" / "jfk_inaugural_11s.wav")
    assert main([jfk, "--model", str(BASE_MODEL), "--initial-prompt", STYLE]) == 0
    expected = load_model(BASE_MODEL, device="cpu").transcribe(jfk, initial_prompt=STYLE).text.strip()
    assert capsys.readouterr().out == expected + "\n" and expected.islower()

    assert main([jfk, "--model", str(BASE_MODEL), "--initial-prompt", "word " * 300]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "--initial-prompt must be at most 223 tokens long, got 300" in captured.err
