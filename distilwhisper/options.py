"""What a transcribe call may be asked, as one value that checks itself.

`TranscribeOptions` holds the options that do not depend on the checkpoint and refuses, by name, one of the wrong
kind: left alone, it would fail deep in decoding with torch's words (`full(): argument 'size' failed to unpack`),
after the encoder has run, or not at all (a NaN threshold calls nothing silent). What depends on the checkpoint
(a language it knows, room in its decoder for the prompt and the tokens) is checked when the options are planned
against it (`plan.make_plan`).
"""

import numbers
from dataclasses import dataclass, fields

from .errors import DistilWhisperError, is_whole_number
from .longform import DEFAULT_CHUNK_LENGTH, chunk_samples
from .tokenizer import TASKS

# "chunked": Distil-Whisper's recipe (longform.py), batched within a file; "sequential": openai/whisper's and
# faster-whisper's, which encodes about half the windows (each 30 s long, where chunks are 15 s in a 30 s window).
LONG_FORMS = ("chunked", "sequential")


@dataclass(frozen=True)
class TranscribeOptions:
    """Every option of `Transcriber.transcribe`, in the order it takes them.

    language: a code, name or <|xx|> ("fr", "french"); None: the checkpoint's, else detected input by input.
    task: "transcribe" or "translate"; None: the checkpoint's, else transcribe.
    max_new_tokens: tokens per window at most; None: the checkpoint's max_length, as generate() counts it.
    no_speech_threshold: a window whose no-speech probability is above it has no text; None keeps every one.
    batch_size: windows decoded together; None: 8 on the CPU, 16 on a GPU.
    chunk_length: seconds per chunk of audio over 30 s (1 to 30).
    return_timestamps: decode with Whisper's timestamp tokens and give segments; "word", as the ASR pipeline spells
        it, is word_timestamps=True.
    initial_prompt: text the model reads as the transcript before the audio (names, spellings, style).
    word_timestamps: give words too, each with its time, from the alignment heads (timestamps turned on).
    num_beams: hypotheses beam search keeps per window (`beam_size` is the same); 1: greedy, the fastest.
    long_form: how audio over 30 s is decoded: "chunked" (the ASR pipeline's chunks, stitched) or "sequential"
        (one 30 s window after another, each from where the last one's timestamps end: generate()'s long form).
    """

    language: str | None = None
    task: str | None = None
    max_new_tokens: int | None = None
    no_speech_threshold: float | None = 0.6
    batch_size: int | None = None
    chunk_length: float = DEFAULT_CHUNK_LENGTH
    return_timestamps: bool = False
    initial_prompt: str | None = None
    word_timestamps: bool = False
    num_beams: int = 1
    long_form: str = "chunked"

    def __post_init__(self) -> None:
        for name in ("language", "task", "initial_prompt"):
            text = getattr(self, name)
            if text is not None and not isinstance(text, str):
                raise DistilWhisperError(f"{name} must be a string, got {text!r}")
        if self.task not in (*TASKS, None):
            raise DistilWhisperError(f"unknown task '{self.task}'; use 'transcribe' or 'translate'")
        for name in ("max_new_tokens", "batch_size", "num_beams"):
            count = getattr(self, name)
            if count is not None and not is_whole_number(count):
                raise DistilWhisperError(f"{name} must be a whole number, got {count!r}")
        for name in ("batch_size", "num_beams"):
            count = getattr(self, name)
            if count is not None and count < 1:
                raise DistilWhisperError(f"{name} must be at least 1, got {count}")
        threshold = self.no_speech_threshold
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or threshold != threshold):
            raise DistilWhisperError(f"no_speech_threshold must be a probability, or None to keep every transcript, got {threshold!r}")
        chunk_samples(self.chunk_length)
        if self.long_form not in LONG_FORMS:
            raise DistilWhisperError(f"long_form must be one of {', '.join(LONG_FORMS)}, got {self.long_form!r}")
        if self.return_timestamps == "word":  # the pipeline's spelling; words are timed from timestamp decoding
            object.__setattr__(self, "word_timestamps", True)
        if not isinstance(self.word_timestamps, bool):
            raise DistilWhisperError(f"word_timestamps must be True or False, got {self.word_timestamps!r}")
        if self.word_timestamps:
            object.__setattr__(self, "return_timestamps", True)
        if not isinstance(self.return_timestamps, bool):
            raise DistilWhisperError(f"return_timestamps must be True, False or \"word\", got {self.return_timestamps!r}")
        if self.word_timestamps and self.long_form == "sequential":
            raise DistilWhisperError("word_timestamps needs long_form='chunked': sequential long form times segments, not words")


OPTION_NAMES = tuple(f.name for f in fields(TranscribeOptions))


def transcribe_options(*args: object, **options: object) -> TranscribeOptions:
    """TranscribeOptions from a call's arguments; an option it does not have is refused by name, in one line.
    `beam_size`, as faster-whisper and openai/whisper call it, is `num_beams`."""
    if "beam_size" in options:
        beam_size = options.pop("beam_size")
        if options.get("num_beams", beam_size) != beam_size:
            raise DistilWhisperError(f"num_beams={options['num_beams']!r} and beam_size={beam_size!r} name one setting; give one of them")
        options["num_beams"] = beam_size
    unknown = [name for name in options if name not in OPTION_NAMES]
    if unknown or len(args) > len(OPTION_NAMES):
        got = f"option '{unknown[0]}'" if unknown else f"{len(args)} options in a row"
        raise DistilWhisperError(f"transcribe has no {got}; its options are {', '.join(OPTION_NAMES)}, beam_size and progress")
    return TranscribeOptions(*args, **options)  # type: ignore[arg-type]
