"""Whisper's tokenizer on tiktoken, built from a Hugging Face checkpoint's own tokenizer files.

vocab.json holds the BPE ranks; the special tokens come from tokenizer.json or, in older exports without it,
added_tokens.json. Every special id is read from the checkpoint rather than hard-coded: large-v3 has one more
language than the other checkpoints, which shifts every id after the language tokens.
"""

from pathlib import Path

import tiktoken

from .audio import TIME_PRECISION
from .errors import DistilWhisperError
from .weights import read_json

# GPT-2's pre-tokenizer regex; Hugging Face's ByteLevel pre-tokenizer uses the same one.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
TASKS = ("transcribe", "translate")
N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>
# Besides these, each checkpoint has one of <|nospeech|> or <|nocaptions|>.
REQUIRED_SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|notimestamps|>",
)


class Tokenizer:
    """Text <-> token ids, plus the ids of the special tokens the decoder prompt and sampling rules need.

    Attribute names follow openai/whisper's Tokenizer, so decoding code reads the same.
    """

    def __init__(self, encoding: tiktoken.Encoding):
        self.encoding = encoding
        special = encoding.encode_single_token
        self.eot = special("<|endoftext|>")
        self.sot = special("<|startoftranscript|>")
        self.transcribe = special("<|transcribe|>")
        self.translate = special("<|translate|>")
        self.sot_prev = special("<|startofprev|>")
        self.sot_lm = special("<|startoflm|>")
        # Renamed from <|nocaptions|> to <|nospeech|> in later checkpoints; the id means the same.
        no_speech = "<|nospeech|>" if "<|nospeech|>" in encoding.special_tokens_set else "<|nocaptions|>"
        self.no_speech = special(no_speech)
        self.no_timestamps = special("<|notimestamps|>")
        self.timestamp_begin = special("<|0.00|>")
        # Languages sit between <|startoftranscript|> and <|translate|>, in the order the model was trained with.
        self.language_codes = tuple(
            encoding.decode_single_token_bytes(i).decode()[2:-2] for i in range(self.sot + 1, self.translate)
        )

    def language_token(self, language: str) -> int:
        """The id of <|xx|> for a language code such as "en"."""
        if language not in self.language_codes:
            known = ", ".join(self.language_codes)
            raise DistilWhisperError(f"unknown language '{language}'; this checkpoint knows: {known}")
        return self.encoding.encode_single_token(f"<|{language}|>")

    def language_of(self, token: int | None) -> str | None:
        """The code of a language token's language ("fr" for <|fr|>); None for any other token."""
        index = -1 if token is None else token - self.sot - 1  # languages follow <|startoftranscript|>
        return self.language_codes[index] if 0 <= index < len(self.language_codes) else None

    def task_of(self, token: int | None) -> str | None:
        """"transcribe" or "translate" for those task tokens; None for any other token."""
        return {self.transcribe: "transcribe", self.translate: "translate"}.get(token) if token is not None else None

    def sot_sequence(self, language: str | None, task: str | None, timestamps: bool = False) -> list[int]:
        """The decoder prompt: <|startoftranscript|> [<|xx|>] [<|task|>] [<|notimestamps|>].

        language and task None leave their tokens out: English-only checkpoints were trained without
        either (<|startoftranscript|><|notimestamps|>, as openai/whisper and transformers prompt them).
        """
        if task not in (*TASKS, None):
            raise DistilWhisperError(f"unknown task '{task}'; use 'transcribe' or 'translate'")
        tokens = [self.sot]
        if language is not None:
            tokens.append(self.language_token(language))
        if task is not None:
            tokens.append(self.transcribe if task == "transcribe" else self.translate)
        if not timestamps:
            tokens.append(self.no_timestamps)
        return tokens

    def previous_text(self, text: str) -> list[int]:
        """<|startofprev|> and `text`: what Whisper reads as the transcript before this window (an initial prompt
        of names, spellings or style), encoded as openai/whisper and transformers' get_prompt_ids do: the text
        stripped, after one space."""
        return [self.sot_prev, *self.encode(" " + text.strip())]

    def encode(self, text: str) -> list[int]:
        """Plain text to ids; "<|endoftext|>" written in the text is ordinary text, not the special token."""
        return self.encoding.encode(text, disallowed_special=())

    def decode(self, tokens: list[int]) -> str:
        """Ids to text, dropping specials and timestamps (every id from <|endoftext|> up)."""
        return self.encoding.decode([t for t in tokens if t < self.eot])

    def decode_with_timestamps(self, tokens: list[int]) -> str:
        """Like decode, but timestamp tokens are written out as "<|1.08|>".

        Text between timestamps is decoded piece by piece, as Hugging Face does, so a character split
        across a timestamp decodes the same way in both.
        """
        parts: list[str] = []
        text: list[int] = []
        for token in tokens:
            if token >= self.timestamp_begin:
                parts.append(self.decode(text))
                parts.append(f"<|{(token - self.timestamp_begin) * TIME_PRECISION:.2f}|>")
                text = []
            else:
                text.append(token)
        parts.append(self.decode(text))
        return "".join(parts)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's bytes_to_unicode, inverted: vocab.json spells each byte as a printable character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in chars):
        chars[b] = chr(256 + n)
    return {c: b for b, c in chars.items()}


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    """Build the tokenizer from vocab.json (the BPE ranks) and the checkpoint's special tokens."""
    model_dir = Path(model_dir)
    if not (model_dir / "vocab.json").is_file():
        raise DistilWhisperError(f"{model_dir} has no vocab.json; expected a Hugging Face Whisper checkpoint folder")
    vocab = read_json(model_dir / "vocab.json")
    special = _special_tokens(model_dir, vocab)

    # With GPT-2-style vocabularies a token's id is its merge rank, which is all tiktoken needs.
    first_special = min(special.values())
    byte_of = _byte_decoder()
    ranks = {bytes(byte_of[c] for c in token): i for token, i in vocab.items() if i < first_special}

    encoding = tiktoken.Encoding(
        name=f"whisper-{model_dir.name}", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=special
    )
    return Tokenizer(encoding)


def _special_tokens(model_dir: Path, vocab: dict[str, int]) -> dict[str, int]:
    """{token: id} of every special token, timestamps included.

    tokenizer.json lists them in added_tokens; older exports have no tokenizer.json, only added_tokens.json.
    """
    if (model_dir / "tokenizer.json").is_file():
        source = model_dir / "tokenizer.json"
        added = read_json(source).get("added_tokens", [])
        special = {t["content"]: t["id"] for t in added}
    elif (model_dir / "added_tokens.json").is_file():
        source = model_dir / "added_tokens.json"
        special = read_json(source)
    else:
        raise DistilWhisperError(
            f"{model_dir} has neither tokenizer.json nor added_tokens.json; is this a Whisper checkpoint folder?"
        )
    # Older exports keep <|endoftext|> in vocab.json, where GPT-2 had it, and leave it out of the added tokens.
    if "<|endoftext|>" not in special and "<|endoftext|>" in vocab:
        special["<|endoftext|>"] = vocab["<|endoftext|>"]

    missing = [name for name in REQUIRED_SPECIALS if name not in special]
    if not {"<|nospeech|>", "<|nocaptions|>"} & special.keys():
        missing.append("<|nospeech|>")
    if missing:
        raise DistilWhisperError(f"{source} lacks {', '.join(missing)}; is this a Whisper checkpoint?")
    if "<|0.00|>" not in special:
        # Older exports leave timestamps out of the added tokens; they follow <|notimestamps|> in the model.
        first = special["<|notimestamps|>"] + 1
        special |= {f"<|{i * TIME_PRECISION:.2f}|>": first + i for i in range(N_TIMESTAMPS)}
    return special
