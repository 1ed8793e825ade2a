"""The tiktoken tokenizer against transformers' WhisperTokenizer on the real whisper-base checkpoint files."""

import json
import re
import shutil

import pytest

from conftest import BASE_MODEL, needs_shared, read_manifest
from distilwhisper.errors import DistilWhisperError
from distilwhisper.tokenizer import load_tokenizer

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


@pytest.fixture(scope="module")
def hf():
    from transformers import AutoTokenizer

    # With this checkpoint's tokenizer_config.json, transformers 5.24 registers only <|endoftext|> as special, so
    # decode_with_timestamps computes timestamp_begin = all_special_ids[-1] + 1 = <|startoftranscript|> and
    # mislabels every timestamp. Naming the specials restores its intended behaviour (timestamps = ids after them).
    added = json.loads((BASE_MODEL / "tokenizer.json").read_text())["added_tokens"]
    return AutoTokenizer.from_pretrained(BASE_MODEL, extra_special_tokens=[t["content"] for t in added if t["special"]])


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


@needs_shared
@pytest.mark.parametrize(
    "language, task, timestamps",
    [("en", "transcribe", False), ("en", "transcribe", True), ("en", "translate", False), ("de", "translate", True)],
)
def test_sot_sequence_matches_hf_prefix_tokens(tok, hf, language, task, timestamps):
    """Oracle: WhisperTokenizer.set_prefix_tokens(language=<name>, task, predict_timestamps), then .prefix_tokens."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    hf.set_prefix_tokens(language=LANGUAGES[language], task=task, predict_timestamps=timestamps)
    assert tok.sot_sequence(language, task, timestamps) == hf.prefix_tokens


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
        ({"vocab.json": "{}"}, "has no tokenizer.json"),
        ({"vocab.json": "{}", "tokenizer.json": '{"added_tokens": []}'}, "lacks <|endoftext|>, "),
    ],
)
def test_incomplete_checkpoint_is_a_readable_error(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DistilWhisperError, match=re.escape(str(tmp_path))) as error:
        load_tokenizer(tmp_path)
    assert message in str(error.value)
