"""The tiktoken tokenizer against transformers' WhisperTokenizer, and its decoder prompt against the one
transformers' generate() builds, on the real whisper-base checkpoint files."""

import json
import re
import shutil

import pytest

from helpers import BASE_MODEL, needs_shared, read_manifest
from distilwhisper.errors import DistilWhisperError
from distilwhisper.tokenizer import TASKS, load_tokenizer

HARD_STRINGS = [
    "",
    "Héllo wörld, ça va? Ñandú über straße",
    "1234567890 3.14159 $1,000,000.00 1st 2nd 3rd 10:30pm 50% -7",
    "Wait... what?! (yes) [no] {maybe} -- \"quoted\" 'single' it's we'll I'd they've you're",
    "multiple   spaces\tand\ttabs  ",
    "line one\nline two\n\n  indented\r\nend\n",
    "emoji 🎉👍🏽 and a family 👨‍👩‍👧 ❤️",
    "日本語のテキスト、中文文本。한국어 텍스트",
    "Привет, мир! Γειά σου κόσμε. مرحبا بالعالم עברית हिन्दी",
    "   leading and trailing   ",
]

SPECIALS = {
    "eot": "<|endoftext|>",
    "sot": "<|startoftranscript|>",
    "transcribe": "<|transcribe|>",
    "translate": "<|translate|>",
    "sot_prev": "<|startofprev|>",
    "sot_lm": "<|startoflm|>",
    "no_speech": "<|nospeech|>",  # whisper-base's name for it; older exports say <|nocaptions|>
    "no_timestamps": "<|notimestamps|>",
    "timestamp_begin": "<|0.00|>",
}


def texts() -> list[str]:
    """Every manifest transcript, bare and after a space (how words look mid-sentence), plus HARD_STRINGS."""
    references = [text for _, text in read_manifest()]
    return references + [" " + text for text in references] + HARD_STRINGS


def hf_tokenizer(folder):
    """The oracle: transformers' WhisperTokenizer loaded from `folder`, whisper-base's special tokens named."""
    from transformers import WhisperTokenizer

    # From this checkpoint's files (with or without tokenizer.json), transformers 5.24 registers only <|endoftext|>
    # as special, so decode_with_timestamps computes timestamp_begin = all_special_ids[-1] + 1 = <|startoftranscript|>
    # and mislabels every timestamp. Naming the specials restores its intended behaviour (timestamps = ids after them).
    added = json.loads((BASE_MODEL / "tokenizer.json").read_text())["added_tokens"]
    return WhisperTokenizer.from_pretrained(folder, extra_special_tokens=[t["content"] for t in added if t["special"]])


@pytest.fixture(scope="module")
def hf():
    return hf_tokenizer(BASE_MODEL)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(BASE_MODEL)


@needs_shared
def test_encode_matches_hf(tok, hf):
    """Oracle: WhisperTokenizer.encode(text, add_special_tokens=False)."""
    for text in texts():
        assert tok.encode(text) == hf.encode(text, add_special_tokens=False), repr(text)


@needs_shared
def test_encode_treats_special_strings_as_text(tok, hf):
    """Oracle: WhisperTokenizer.encode(..., split_special_tokens=True), which also reads "<|...|>" as plain text."""
    text = "say <|endoftext|> or <|startoftranscript|> out loud"
    assert tok.encode(text) == hf.encode(text, add_special_tokens=False, split_special_tokens=True)
    assert tok.eot not in tok.encode(text)


@needs_shared
def test_decode_matches_hf_and_round_trips(tok, hf):
    """Oracle: WhisperTokenizer.decode(ids, skip_special_tokens=True), with a prompt, timestamps and eot around."""
    for text in texts():
        ids = hf.encode(text, add_special_tokens=False)
        framed = tok.sot_sequence("en", "transcribe", timestamps=True) + [tok.timestamp_begin] + ids + [tok.eot]
        assert tok.decode(framed) == hf.decode(framed, skip_special_tokens=True), repr(text)
        assert tok.decode(tok.encode(text)) == text


@needs_shared
def test_decode_of_partial_characters_matches_hf(tok, hf):
    """Oracle: WhisperTokenizer.decode on single tokens that each hold part of a multi-byte character."""
    for token in hf.encode("🎉👨‍👩‍👧 日本語 한국어", add_special_tokens=False):
        assert tok.decode([token]) == hf.decode([token], skip_special_tokens=True), token


@needs_shared
def test_special_token_ids_match_hf(tok, hf):
    """Oracle: WhisperTokenizer.convert_tokens_to_ids (which maps unknown strings to <|endoftext|>, hence get_vocab)."""
    vocab = hf.get_vocab()
    for attribute, token in SPECIALS.items():
        assert token in vocab, token
        assert getattr(tok, attribute) == hf.convert_tokens_to_ids(token), attribute


@needs_shared
def test_language_tokens_match_hf(tok, hf):
    """Oracle: transformers' Whisper LANGUAGES, in order, as far as the checkpoint has <|xx|> tokens for them."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab = hf.get_vocab()
    in_checkpoint = tuple(code for code in LANGUAGES if f"<|{code}|>" in vocab)
    assert tok.language_codes == in_checkpoint
    assert [tok.language_token(code) for code in in_checkpoint] == hf.convert_tokens_to_ids(
        [f"<|{code}|>" for code in in_checkpoint]
    )


@pytest.fixture(scope="module")
def hf_generate_prompt():
    """(language, task, timestamps) -> the input_ids of the first decoder call in whisper-base's generate().

    The prompt does not depend on the audio, so one random log-mel is encoded once and every generate() gets
    those encoder states instead of re-encoding.
    """
    import torch
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(BASE_MODEL, dtype=torch.float32).eval()
    calls = []

    def record(module, args, kwargs):
        calls.append(kwargs["input_ids"][0].tolist())

    model.model.decoder.register_forward_pre_hook(record, with_kwargs=True)
    features = torch.randn(1, model.config.num_mel_bins, 3000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        encoded = model.model.encoder(features)

    def prompt(language, task, timestamps):
        calls.clear()
        model.generate(
            encoder_outputs=encoded, language=language, task=task, return_timestamps=timestamps, max_new_tokens=1
        )
        return calls[0]

    return prompt


@needs_shared
@pytest.mark.parametrize("timestamps", [False, True], ids=["notimestamps", "timestamps"])
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("language", ["en", "fr", "de", "ja"])
def test_sot_sequence_matches_hf_generate_prompt(tok, hf_generate_prompt, language, task, timestamps):
    """Oracle: the decoder input of WhisperForConditionalGeneration.generate(language, task, return_timestamps)."""
    assert tok.sot_sequence(language, task, timestamps) == hf_generate_prompt(language, task, timestamps)


@needs_shared
def test_sot_sequence_without_language_matches_hf(tok):
    """Oracle: a fresh WhisperTokenizer with task="transcribe" and no language (set_prefix_tokens cannot unset one)."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(BASE_MODEL, task="transcribe")
    assert tok.sot_sequence(None, "transcribe") == hf.prefix_tokens


@needs_shared
def test_decode_with_timestamps_matches_hf(tok, hf):
    """Oracle: WhisperTokenizer.decode(ids, decode_with_timestamps=True, skip_special_tokens=True)."""
    t0 = tok.timestamp_begin
    words = [hf.encode(text, add_special_tokens=False) for text in (" And so, my fellow", " Americans,", " 日本語")]
    ids = (
        tok.sot_sequence("en", "transcribe", timestamps=True)
        + [t0, *words[0], t0 + 54, t0 + 54, *words[1], t0 + 150, t0 + 1500, *words[2], t0 + 1500, tok.eot]
    )
    expected = hf.decode(ids, decode_with_timestamps=True, skip_special_tokens=True)
    assert expected.startswith("<|0.00|> And so, my fellow<|1.08|>")  # the oracle itself is sane
    assert tok.decode_with_timestamps(ids) == expected


@needs_shared
def test_timestamps_follow_notimestamps_when_tokenizer_json_lacks_them(tok, tmp_path):
    """Oracle: the full checkpoint (checked against WhisperTokenizer above); older exports list no <|0.00|>..."""
    shutil.copy(BASE_MODEL / "vocab.json", tmp_path / "vocab.json")
    config = json.loads((BASE_MODEL / "tokenizer.json").read_text())
    config["added_tokens"] = [t for t in config["added_tokens"] if t["id"] < tok.timestamp_begin]
    (tmp_path / "tokenizer.json").write_text(json.dumps(config))

    stripped = load_tokenizer(tmp_path)
    ids = [tok.timestamp_begin, *tok.encode(" hi"), tok.timestamp_begin + 1500]
    assert stripped.timestamp_begin == tok.timestamp_begin
    assert stripped.decode_with_timestamps(ids) == tok.decode_with_timestamps(ids) == "<|0.00|> hi<|30.00|>"


def legacy_tokenizer_files(folder, eot_in_vocab: bool):
    """whisper-base's tokenizer files as older hub repos ship them: no tokenizer.json, specials in added_tokens.json.

    tokenizer_config.json is left out too: this one also lists the added tokens, so the oracle would not need
    added_tokens.json. With `eot_in_vocab`, <|endoftext|> moves from added_tokens.json to vocab.json, as in the
    oldest exports.
    """
    for name in ("vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json"):
        shutil.copy(BASE_MODEL / name, folder / name)
    if eot_in_vocab:
        vocab, added = (json.loads((folder / name).read_text()) for name in ("vocab.json", "added_tokens.json"))
        vocab["<|endoftext|>"] = added.pop("<|endoftext|>")
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "added_tokens.json").write_text(json.dumps(added))
    return folder


@needs_shared
@pytest.mark.parametrize("eot_in_vocab", [False, True], ids=["eot-in-added-tokens", "eot-in-vocab"])
def test_checkpoint_without_tokenizer_json_matches_hf(tok, tmp_path, eot_in_vocab):
    """Oracle: WhisperTokenizer loaded from the same folder (vocab.json, merges.txt, added_tokens.json), and the
    full checkpoint: every special id, encoding and decoding must come out the same."""
    folder = legacy_tokenizer_files(tmp_path, eot_in_vocab)
    legacy, hf = load_tokenizer(folder), hf_tokenizer(folder)

    for attribute, token in SPECIALS.items():
        assert getattr(legacy, attribute) == getattr(tok, attribute) == hf.convert_tokens_to_ids(token), attribute
    assert {t: legacy.encoding.encode_single_token(t) for t in tok.encoding.special_tokens_set} == {
        t: tok.encoding.encode_single_token(t) for t in tok.encoding.special_tokens_set
    }
    assert legacy.language_codes == tok.language_codes
    for text in texts():
        ids = legacy.encode(text)
        assert ids == tok.encode(text) == hf.encode(text, add_special_tokens=False), repr(text)
        framed = [*legacy.sot_sequence("en", "transcribe", timestamps=True), legacy.timestamp_begin, *ids, legacy.eot]
        assert legacy.decode(framed) == tok.decode(framed) == hf.decode(framed, skip_special_tokens=True), repr(text)


@needs_shared
def test_unknown_language_is_a_readable_error(tok):
    with pytest.raises(DistilWhisperError, match=r"unknown language 'xx'; this checkpoint knows: en, zh, de"):
        tok.sot_sequence("xx", "transcribe")


@needs_shared
def test_unknown_task_is_a_readable_error(tok):
    with pytest.raises(DistilWhisperError, match=r"unknown task 'summarize'"):
        tok.sot_sequence("en", "summarize")


@pytest.mark.parametrize(
    "files, message",
    [
        ({}, "has no vocab.json"),
        ({"vocab.json": "{}"}, "has neither tokenizer.json nor added_tokens.json"),
        ({"vocab.json": "{}", "tokenizer.json": '{"added_tokens": []}'}, "tokenizer.json lacks <|endoftext|>, "),
        ({"vocab.json": "{}", "added_tokens.json": '{"<|en|>": 1}'}, "added_tokens.json lacks <|endoftext|>, "),
    ],
)
def test_incomplete_checkpoint_is_a_readable_error(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DistilWhisperError, match=re.escape(str(tmp_path))) as error:
        load_tokenizer(tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)
