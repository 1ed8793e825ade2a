"""A transcribe call's options resolved against the checkpoint, once: what every window of the call is decoded with.

The prompt is built as transformers' generate() builds it: the previous text of an initial prompt, if any, then
<|startoftranscript|>, the language, the task and <|notimestamps|> (left out for timestamps); English-only
checkpoints were trained with neither language nor task. Without a language, each window's is detected and put
in the language's place (`DecodePlan.prompt`).
"""

from dataclasses import dataclass

from .alignment import Alignment
from .beam_search import BeamSearch
from .decoding import Decoding, Rule, SuppressAtBegin, SuppressTokens, TimestampRules
from .errors import DistilWhisperError
from .languages import language_code
from .model import ModelDims
from .options import TranscribeOptions
from .tokenizer import Tokenizer
from .weights import GenerationDefaults


@dataclass(frozen=True)
class DecodePlan:
    """The prompt around the language's place, the language (None: detected window by window, among
    `detect_from`), the decoding loop's settings, and what the windows' results are read with."""

    head: tuple[int, ...]  # <|startofprev|> and the previous text, if any, then <|startoftranscript|>
    language_token: int | None  # None: English-only (no language token), or detected
    tail: tuple[int, ...]  # the task, <|notimestamps|>
    language: str | None  # the code results report; None: detected
    detect_from: dict[int, str | None]  # the language tokens detection chooses from, and their codes; {}: the language is known
    decoding: Decoding
    timestamp_begin: int | None  # <|0.00|> when decoding with timestamps, else None
    no_speech_threshold: float | None
    alignment: Alignment | None = None  # with word timing: the checkpoint's alignment heads
    beams: BeamSearch | None = None  # None: greedy

    @property
    def sot(self) -> int:
        return self.head[self.decoding.sot_index]

    def prompt(self, language_token: int | None = None) -> list[int]:
        """A window's prompt, with `language_token` (the one detected for it) in the language's place."""
        token = self.language_token if language_token is None else language_token
        return [*self.head, *([] if token is None else [token]), *self.tail]


def is_multilingual(defaults: GenerationDefaults, n_vocab: int) -> bool:
    """generation_config's `is_multilingual`, else the vocabulary: English-only (.en) checkpoints have 51864 tokens
    (<|endoftext|> = 50256), multilingual ones 51865 or more (openai/whisper's rule)."""
    return defaults.is_multilingual if defaults.is_multilingual is not None else n_vocab >= 51865


def most_previous_text(dims: ModelDims) -> int:
    """The most tokens of previous text Whisper reads before a window: 223, just under half its decoder.
    openai/whisper keeps that many of a longer prompt; generate() counts max_length after that many."""
    return dims.n_text_ctx // 2 - 1


def make_plan(options: TranscribeOptions, tokenizer: Tokenizer, defaults: GenerationDefaults, dims: ModelDims) -> DecodePlan:
    """`options` planned for this checkpoint; what does not fit it (an unknown language, a prompt or a token
    limit the decoder has no room for) is refused in one line naming the option."""
    multilingual = is_multilingual(defaults, dims.n_vocab)
    language, task = language_and_task(options.language, options.task, defaults, tokenizer, multilingual)
    head = [tokenizer.sot]
    if options.initial_prompt is not None:
        previous = tokenizer.previous_text(options.initial_prompt)  # <|startofprev|> and the text's tokens
        if len(previous) - 1 > most_previous_text(dims):
            raise DistilWhisperError(
                f"initial_prompt must be at most {most_previous_text(dims)} tokens long, got {len(previous) - 1} "
                f"(Whisper reads at most half its {dims.n_text_ctx} decoder positions of previous text)"
            )
        head = previous + head
    tail = tokenizer.sot_sequence(None, task if multilingual else None, options.return_timestamps)[1:]
    language_token = tokenizer.language_token(language) if multilingual and language is not None else None
    prompt_length = len(head) + (1 if multilingual else 0) + len(tail)  # a detected language takes its place too
    room = dims.n_text_ctx - prompt_length
    if options.max_new_tokens is not None and not 1 <= options.max_new_tokens <= room:
        raise DistilWhisperError(
            f"max_new_tokens must be between 1 and {room} "
            f"(the decoder holds {dims.n_text_ctx} positions, the prompt takes {prompt_length})"
        )
    rules: list[Rule] = [SuppressTokens(defaults.suppress_tokens), SuppressAtBegin(defaults.begin_suppress_tokens)]
    if options.return_timestamps:
        # Last: its "timestamps beat any text token" test reads the logits the other rules left.
        rules.append(TimestampRules(tokenizer.eot, tokenizer.no_timestamps, defaults.max_initial_timestamp_index))
    max_new_tokens = options.max_new_tokens or default_max_new_tokens(defaults, dims, prompt_length)
    detect_from = {}
    if multilingual and language is None:
        # generation_config's lang_to_id, as in transformers, else every language token.
        candidates = defaults.language_tokens or [tokenizer.language_token(c) for c in tokenizer.language_codes]
        detect_from = {token: tokenizer.language_of(token) for token in candidates}
    return DecodePlan(
        tuple(head), language_token, tuple(tail), language, detect_from,
        Decoding(tokenizer.eot, max_new_tokens, tuple(rules), tokenizer.no_speech, sot_index=len(head) - 1),
        tokenizer.timestamp_begin if options.return_timestamps else None, options.no_speech_threshold,
        alignment_of(defaults, dims) if options.word_timestamps else None,
        BeamSearch(options.num_beams, defaults.length_penalty, defaults.early_stopping) if options.num_beams > 1 else None,
    )  # fmt: skip


def alignment_of(defaults: GenerationDefaults, dims: ModelDims) -> Alignment:
    """The checkpoint's alignment heads for word timing; refused in one line when it names none, or heads its decoder
    does not have."""
    if not defaults.alignment_heads:
        raise DistilWhisperError(
            "word_timestamps needs the checkpoint's alignment_heads (generation_config.json), and this checkpoint has none"
        )
    for layer, head in defaults.alignment_heads:
        if layer >= dims.decoder_layers or head >= dims.decoder_heads:
            raise DistilWhisperError(
                f"alignment_heads names head {head} of decoder layer {layer}, but the decoder has {dims.decoder_layers} "
                f"layers of {dims.decoder_heads} heads"
            )
    return Alignment(defaults.alignment_heads, defaults.median_filter_width)


def language_and_task(
    language: str | None, task: str | None, defaults: GenerationDefaults, tokenizer: Tokenizer, multilingual: bool
) -> tuple[str | None, str]:
    """The caller's language and task, else the checkpoint's, resolved as transformers' generate() resolves them.

    generation_config's `language`/`task` come first; only when it sets neither do its older
    `forced_decoder_ids` speak. Without a language from any of them: None, each window's language is
    detected. Without a task from any of them: transcribe. (Here we part from transformers on purpose: when
    nothing names a task, its generate() leaves the task token out, <|startoftranscript|><|xx|><|notimestamps|>,
    a prompt Whisper was never trained on; whisper-base then repeats one word until max_length on the JFK clip.
    openai/whisper and faster-whisper always put the task in.) English-only checkpoints transcribe English and
    nothing else.
    """
    if not multilingual:
        if (language is not None and language_code(language) != "en") or task not in (None, "transcribe"):
            asked = f"language '{language}'" if task in (None, "transcribe") else f"task '{task}'"
            raise DistilWhisperError(f"this checkpoint is English-only: it can only transcribe English, not {asked}")
        return "en", "transcribe"
    language, task = language or defaults.language, task or defaults.task
    if language is None and task is None:
        for _, token in defaults.forced_decoder_ids:
            language = tokenizer.language_of(token) or language
            task = tokenizer.task_of(token) or task
    return language_code(language) if language else None, task or "transcribe"


def default_max_new_tokens(defaults: GenerationDefaults, dims: ModelDims, prompt_length: int) -> int:
    """transformers' generate() default: the checkpoint's max_length (448 in Whisper's) counted after the
    prompt's first `most_previous_text` tokens, at most what the decoder holds after the prompt."""
    if defaults.max_length is None:
        return dims.n_text_ctx - prompt_length
    return max(1, min(defaults.max_length + min(most_previous_text(dims), prompt_length), dims.n_text_ctx) - prompt_length)
