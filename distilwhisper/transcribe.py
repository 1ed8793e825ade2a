"""What users call: load a checkpoint once, then transcribe audio with it.

    model = distilwhisper.load_model("distil-whisper/distil-large-v2")
    result = model.transcribe("speech.wav")   # or bytes, 16 kHz samples, {"array": ..., "sampling_rate": ...}, a list
    print(result.text)

One way down: the options are planned against the checkpoint (`plan`), each input is opened (`inputs`), short
inputs are decoded as one batch of windows and each long one as batches of its chunks (`windows`, `longform`),
and each input's windows become its Transcription.
"""

import itertools
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, overload

import numpy as np
import torch

from .audio import SAMPLE_RATE, AudioStream, pad_or_trim
from .compiled import Steps, compiled_steps, eager_steps
from .decoding import WindowResult
from .devices import Precision, resolve_precision
from .errors import DistilWhisperError
from .inputs import AudioInput, is_short, list_item_name, open_audio
from .longform import Chunk, chunk_count, stitch, stitch_with_timestamps, stream_chunks
from .model import Whisper
from .options import TranscribeOptions, transcribe_options
from .plan import DecodePlan, is_multilingual, make_plan
from .speculative import Assistant, load_assistant
from .tokenizer import Tokenizer, load_tokenizer
from .weights import GenerationDefaults, int8_linears, is_int8, load_generation_defaults, load_whisper, resolve_model_dir
from .sequential import Pass, pass_spans
from .windows import Engine, decode_sequential, decode_windows
from .words import Word, words_of

# transcribe(progress=...): called as progress(chunks_done, chunks_total or None, audio_seconds_done)
Progress = Callable[[int, int | None, float], None]


@dataclass
class Segment:
    """A stretch of the transcript between two timestamps, in seconds from the start of the audio."""

    start: float
    end: float
    text: str  # Whisper's leading space included


@dataclass
class Transcription:
    """What `transcribe` gives for one input: the text and tokens, the language, the decode's confidence
    (avg_logprob, no_speech_prob), whether max_new_tokens cut it short, and, when asked for, its segments."""

    text: str  # decoded exactly as the tokenizer does it: Whisper's leading space included
    tokens: list[int]  # the generated text tokens: no special tokens, no timestamps even when they were asked for
    language: str | None  # the language decoded in: the caller's, the checkpoint's, or the one detected
    avg_logprob: float  # mean log-probability of the generated tokens
    no_speech_prob: float  # the model's belief that there is no speech at all
    truncated: bool = False  # max_new_tokens, not the end token, ended the transcript: text may be missing
    # With an assistant (speculative decoding): accepted draft tokens / proposed ones (for long audio, the mean
    # over its chunks); None without one, or when it proposed nothing.
    acceptance_rate: float | None = None
    segments: list[Segment] = field(default_factory=list)  # with return_timestamps=True only; text is theirs joined
    words: list[Word] = field(default_factory=list)  # with word_timestamps=True only: the segments' words, timed

    def to_dict(self) -> dict:
        """The fields as plain JSON types: what the CLI's JSON output holds, besides "file"."""
        return asdict(self)


class Transcriber:
    """A loaded checkpoint: the network, its tokenizer and its decoding defaults.

    One Transcriber decodes one batch at a time: the decoder's key/value caches are preallocated buffers
    on the model (fixed shapes, so the step can become a CUDA graph), so concurrent `transcribe` calls from
    several threads wait for each other rather than overwrite each other's caches.

    `steps` run the encoder and the decoder step: the model's own (eager) by default, or `compiled_steps(model)`;
    with an `assistant`, decoding is speculative, with the same result.
    """

    def __init__(
        self,
        model: Whisper,
        tokenizer: Tokenizer,
        defaults: GenerationDefaults,
        steps: Steps | None = None,
        assistant: Assistant | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.defaults = defaults
        self.assistant = assistant
        self.engine = Engine(model, steps or eager_steps(model, assistant), assistant)
        self.lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return self.model.decoder.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """What the network computes in (its activations; with int8 weights, float32)."""
        return self.model.decoder.embed_tokens.weight.dtype

    @property
    def precision(self) -> str:
        """The mode it runs in, by name: float32, bfloat16, float16, or int8 (int8 weights, float32 activations);
        what dtype="auto" chose."""
        return Precision(self.device, self.dtype, is_int8(self.model)).name

    @property
    def default_batch_size(self) -> int:
        """What batch_size=None means: 16 windows on a GPU, 8 on the CPU.

        On the CPU the encoder's work grows with the batch, so batching pays only in the decoder loop's per-step
        overhead, which 8 windows mostly amortise; a GPU needs more windows to keep it busy, and 16 is what
        Distil-Whisper's long-form recipe uses. bench/long_form.py measures others.
        """
        return 16 if self.device.type == "cuda" else 8

    @property
    def is_multilingual(self) -> bool:
        return is_multilingual(self.defaults, self.model.dims.n_vocab)

    def plan(self, options: TranscribeOptions | None = None) -> DecodePlan:
        """The options planned for this checkpoint: the prompt, the rules and the limits every window of a call is
        decoded with. Options that do not fit the checkpoint are refused here, before any work."""
        options = options or TranscribeOptions()
        if options.num_beams > 1 and self.assistant is not None:
            # A draft proposes one continuation and the model verifies it; beams would each need their own.
            raise DistilWhisperError(
                f"num_beams={options.num_beams} needs a model loaded without an assistant: speculative decoding is greedy"
            )
        return make_plan(options, self.tokenizer, self.defaults, self.model.dims)

    @overload
    def transcribe(self, audio: list[AudioInput], *args: Any, progress: Progress | None = None, **options: Any) -> list[Transcription]: ...

    @overload
    def transcribe(self, audio: AudioInput, *args: Any, progress: Progress | None = None, **options: Any) -> Transcription: ...

    def transcribe(
        self, audio: AudioInput | list[AudioInput], *args: Any, progress: Progress | None = None, **options: Any
    ) -> Transcription | list[Transcription]:
        """Greedy transcription of one input or a list of them; a list comes back as a list, in its order.

        The options are `TranscribeOptions`' fields, by name or in its order: language, task, max_new_tokens,
        no_speech_threshold (0.6), batch_size, chunk_length (15), return_timestamps, initial_prompt.

        A list is decoded `batch_size` inputs at a time (each batch's audio is read only when its turn comes, so
        memory depends on the batch size, not on the length of the list); `batch_size=None` is
        `default_batch_size`. An input longer than 30 s is cut into `chunk_length`-second chunks overlapping by a
        sixth of that on each side, decoded `batch_size` chunks at a time and stitched where the overlaps agree:
        the transformers ASR pipeline's chunked algorithm (`longform`); `max_new_tokens` then holds per chunk, and
        a long file is read as its chunks are reached. `progress(chunks_done, chunks_total, audio_seconds_done)` is
        called for each long input, in input order, before its first batch of chunks and after each; the total is
        None when the file does not say its length.

        `language` and `task` default to the checkpoint's own (generation_config.json); without a language there,
        each input's language is detected as transformers' generate() does (a long input's chunk by chunk, as the
        pipeline does), and `Transcription.language` says which. English-only (.en) checkpoints transcribe English
        only. `max_new_tokens` defaults to what fits the decoder, as in transformers; a result whose transcript
        that limit cut short has `truncated` set.

        An input whose no-speech probability is above `no_speech_threshold` is silence: empty text. openai/whisper
        also asks for an unlikely transcript (average log-probability below -1) before it drops one, which keeps
        the confident " you" Whisper hallucinates on digital silence; we don't. None keeps whatever was decoded.

        `return_timestamps=True` decodes with Whisper's timestamp tokens and fills `segments`: (start, end, text) in
        seconds, as the transformers ASR pipeline's `chunks` (`longform.stitch_with_timestamps`; a last segment
        the model left open ends at the end of the audio). `text` is then the segments' text joined.

        `initial_prompt`: text the model reads as the transcript before the audio (names, spellings, style), for
        every input and every chunk of a long one: transformers' generate(prompt_ids=get_prompt_ids(text)).

        `word_timestamps=True` (or `return_timestamps="word"`, the pipeline's spelling) decodes with timestamps and
        fills `words` too: Word(start, end, text), timed from the checkpoint's alignment heads, as the ASR pipeline's
        `chunks` with return_timestamps="word" (docs/words.md).

        `long_form="sequential"` decodes an input over 30 s one 30 s window after another, each from where the last
        one's timestamps end, as generate() given the whole log-mel does (sequential.py): `batch_size` such inputs
        together, each read whole first; `chunk_length` does not apply.
        """
        opts = transcribe_options(*args, **options)
        plan = self.plan(opts)  # before any input is read
        numbered = enumerate(audio) if isinstance(audio, list) else [(None, audio)]  # a list's items named by place
        results = []
        for outcome in self.outcomes(iter(numbered), plan, opts, progress):
            if isinstance(outcome, Exception):
                raise outcome
            results.append(outcome)
        return results if isinstance(audio, list) else results[0]

    def transcribe_each(
        self, audio: Iterable[AudioInput], *args: Any, progress: Progress | None = None, **options: Any
    ) -> Iterator[Transcription | Exception]:
        """`transcribe` for many inputs, where one that fails costs only itself: an item per input, in input order,
        its Transcription or the exception it raised (a file that cannot be read, a stream that fails part-way);
        a batch that fails as a whole (running out of memory) is decoded again one input at a time. Options that
        cannot be used raise here, before any input is read; the inputs are read a batch at a time, as the items
        are asked for."""
        opts = transcribe_options(*args, **options)
        return self.outcomes(enumerate(audio), self.plan(opts), opts, progress)

    def outcomes(
        self, numbered: Iterator[tuple[int | None, AudioInput]], plan: DecodePlan, options: TranscribeOptions,
        progress: Progress | None = None,
    ) -> Iterator[Transcription | Exception]:  # fmt: skip
        """Each input's Transcription or exception, from (place in a list or None, input) pairs, `batch_size` at a
        time: the short inputs of a batch decoded together, then each long one in chunks, in input order."""
        batch_size = options.batch_size or self.default_batch_size
        sequential = options.long_form == "sequential"
        timed_plan = self.plan(replace(options, return_timestamps=True)) if sequential else plan  # it seeks by timestamps
        while batch := list(itertools.islice(numbered, batch_size)):
            sources = [opened(item, list_item_name(item, place), whole=sequential) for place, item in batch]
            short = [s for s in sources if not isinstance(s, Exception) and is_short(s)]
            windows = iter(self.decode_short(short, plan))
            long = [s for s in sources if isinstance(s, torch.Tensor) and not is_short(s)]  # read whole when sequential
            decoded = iter(self.transcribe_sequential(long, timed_plan, plan, progress) if sequential else [])
            for source in sources:  # the long ones in their place among the short ones
                if isinstance(source, Exception) or is_short(source):
                    yield source if isinstance(source, Exception) else next(windows)
                    continue
                if sequential:
                    yield next(decoded)
                    continue
                try:  # each decoded in chunks
                    yield self.transcribe_long(source, plan, batch_size, options.chunk_length, progress)
                except Exception as e:  # noqa: BLE001 - this input alone fails
                    yield e

    def decode_short(self, sources: list[torch.Tensor], plan: DecodePlan) -> list[Transcription | Exception]:
        """Inputs of 30 s or less, as one batch of windows; if the batch fails, one window at a time."""
        if not sources:
            return []
        try:
            # Tensors stay where they came from (a CUDA tensor may sit beside a file's samples): one device here.
            waveforms = torch.stack([pad_or_trim(s).to(self.device) for s in sources])
            windows = self.decode(waveforms, plan, [len(s) for s in sources])
            return [self.transcription([w], [Chunk.whole(len(s))], plan) for w, s in zip(windows, sources)]
        except Exception as e:  # noqa: BLE001 - decoded alone, only the culprit fails
            if len(sources) == 1:
                return [e]
            return [outcome for s in sources for outcome in self.decode_short([s], plan)]

    def transcribe_long(
        self, audio: torch.Tensor | AudioStream, plan: DecodePlan, batch_size: int, chunk_length: float,
        progress: Progress | None = None,
    ) -> Transcription:  # fmt: skip
        """One input of any length, in chunks (`longform.stream_chunks`) decoded `batch_size` at a time: 1-D samples
        in memory, or an AudioStream, whose blocks are read only as the chunks need them."""
        blocks: Iterable[np.ndarray]
        n_samples: int | None  # None: a stream that does not say its length
        if isinstance(audio, torch.Tensor):
            blocks, n_samples = [audio.cpu().numpy()], len(audio)
        else:
            blocks, n_samples = audio, round(audio.duration * SAMPLE_RATE) if audio.duration else None
        total = chunk_count(n_samples, chunk_length) if n_samples else None
        if progress:
            progress(0, total, 0.0)
        # each chunk padded as it is cut: its samples are views that would keep the stream's buffers alive
        pieces = ((chunk, pad_or_trim(torch.from_numpy(samples))) for chunk, samples in stream_chunks(blocks, chunk_length))
        windows: list[WindowResult] = []
        chunks: list[Chunk] = []
        while batch := list(itertools.islice(pieces, batch_size)):
            windows += self.decode(torch.stack([w for _, w in batch]), plan, [c.stop - c.start for c, _ in batch])
            chunks += [chunk for chunk, _ in batch]
            if progress:
                progress(len(chunks), total, chunks[-1].stop / SAMPLE_RATE)
        return self.transcription(windows, chunks, plan)

    def transcribe_sequential(
        self, sources: list[torch.Tensor], timed_plan: DecodePlan, plan: DecodePlan, progress: Progress | None = None
    ) -> list[Transcription | Exception]:
        """Inputs over 30 s, decoded together one 30 s window after another (sequential.py); if the batch fails, one
        input at a time. `timed_plan` decodes (with timestamps); `plan` says whether segments are given."""
        if not sources:
            return []
        try:
            for _ in sources:  # an input is one unit of progress: its passes are not known ahead
                if progress:
                    progress(0, 1, 0.0)
            waveforms = torch.nn.utils.rnn.pad_sequence([s.to(self.device) for s in sources], batch_first=True)
            with self.lock:
                decoded = decode_sequential(self.engine, timed_plan, waveforms, [len(s) for s in sources])
            results: list[Transcription | Exception] = []
            for passes, source in zip(decoded, sources):
                results.append(self.sequential_transcription(passes, timed_plan, plan.timestamp_begin is not None))
                if progress:
                    progress(1, 1, len(source) / SAMPLE_RATE)
            return results
        except Exception as e:  # noqa: BLE001 - decoded alone, only the culprit fails
            if len(sources) == 1:
                return [e]
            return [outcome for s in sources for outcome in self.transcribe_sequential([s], timed_plan, plan, progress)]

    def sequential_transcription(self, passes: list[tuple[Pass, WindowResult]], plan: DecodePlan, timestamps: bool) -> Transcription:
        """An input's Transcription from its passes: the text of their segments (`sequential.pass_spans`), and
        what `summary` says of them as of windows."""
        assert plan.timestamp_begin is not None
        spans = [span for done, _ in passes for span in pass_spans(done, plan.timestamp_begin, plan.decoding.eot)]
        tokens = [t for span in spans for t in span.tokens]
        segments = [Segment(s.start, s.end, self.tokenizer.decode(s.tokens)) for s in spans] if timestamps else []
        return summary([result for _, result in passes], self.tokenizer.decode(tokens), tokens, segments, [])

    def decode(self, waveforms: torch.Tensor, plan: DecodePlan, lengths: list[int] | None = None) -> list[WindowResult]:
        with self.lock:
            return decode_windows(self.engine, plan, waveforms, lengths)

    def transcription(self, windows: list[WindowResult], chunks: list[Chunk], plan: DecodePlan) -> Transcription:
        """An input's Transcription from its windows, each with the chunk of the input it heard (a short input: one
        window, heard whole). Over several chunks: the tokens stitched where the overlaps agree, the mean of their
        avg_logprobs and acceptance rates, the lowest no-speech probability (the input is silent only if every
        chunk is), truncated when any chunk was, and the language most chunks were decoded in."""
        words: list[Word] = []
        if plan.timestamp_begin is not None:
            audio_end = round(chunks[-1].stop / SAMPLE_RATE, 2)
            timed = [w.token_times for w in windows] if plan.alignment is not None else None
            spans = stitch_with_timestamps([(w.tokens, c) for w, c in zip(windows, chunks)], plan.timestamp_begin,
                                           plan.decoding.eot, audio_end, timed)  # fmt: skip
            segments = [Segment(s.start, s.end, self.tokenizer.decode(s.tokens)) for s in spans]
            text, tokens = "".join(s.text for s in segments), [t for s in spans for t in s.tokens]
            if timed is not None:
                words = [word for s in spans for word in words_of(self.tokenizer, s.tokens, s.times)]
        else:
            tokens = stitch([[t for t in w.tokens if t < plan.decoding.eot] for w in windows])  # text tokens only
            text, segments = self.tokenizer.decode(tokens), []
        return summary(windows, text, tokens, segments, words)


def summary(windows: list[WindowResult], text: str, tokens: list[int], segments: list[Segment], words: list[Word]) -> Transcription:
    """The Transcription of an input's text from its windows: the mean of their avg_logprobs and acceptance rates,
    the lowest no-speech probability (the input is silent only if every window is), truncated when any window was,
    and the language most windows were decoded in."""
    rates = [w.acceptance_rate for w in windows if w.acceptance_rate is not None]
    return Transcription(
        text, tokens,
        language=Counter(w.language for w in windows).most_common(1)[0][0],  # ties: the earliest window's
        avg_logprob=sum(w.avg_logprob for w in windows) / len(windows),
        no_speech_prob=min(w.no_speech_prob for w in windows),
        truncated=any(w.truncated for w in windows),
        acceptance_rate=sum(rates) / len(rates) if rates else None,
        segments=segments,
        words=words,
    )  # fmt: skip


def opened(audio: AudioInput, name: str | None, whole: bool = False) -> torch.Tensor | AudioStream | Exception:
    """`open_audio`'s samples or stream (`whole`: a stream read to its end, as samples), or what it raised (an input
    that cannot be read fails alone)."""
    try:
        source = open_audio(audio, name)
        if whole and isinstance(source, AudioStream):
            return torch.from_numpy(np.concatenate(list(source)))
        return source
    except Exception as e:  # noqa: BLE001 - out of memory reading one file too
        return e


def load_model(
    name_or_path: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    compile: bool = False,
    assistant: str | os.PathLike | None = None,
) -> Transcriber:
    """A checkpoint, ready to transcribe: a folder in the Hugging Face layout, a hub repo id (e.g.
    "distil-whisper/distil-large-v2", fetched into the hub cache, or `cache_dir`, at `revision`; with
    HF_HUB_OFFLINE=1 only the cache is read) or a short name ("base", "large-v2", "distil-large-v2"...).

    `device` defaults to "auto", and `dtype` to the GPU in float16 when there is one, else the CPU in float32 (the
    parity reference). dtype "int8" (the CPU) gives the encoder's and decoder's linear layers int8 weights, made at
    load time; "auto" picks the fastest that keeps accuracy: float16 on a GPU, int8 on the CPU (compiled: bfloat16
    where the CPU computes it natively, else float32; `precision` says which; docs/precision.md).
    `compile=True` compiles the decoder step, and on a GPU the encoder too (torch.compile; CUDA graphs on a
    GPU): each batch size bucket (1, 2, 4, 8...) pays a compilation on first use; on a CPU it hardly pays
    (docs/compile.md says when it does). `assistant` (a checkpoint folder, hub id or short name, e.g.
    distil-large-v2 for whisper-large-v2; or "int8", this model's own decoder with int8 weights, CPU only)
    makes decoding speculative: the assistant's decoder drafts, this model verifies, and the result is this
    model's own greedy output, sooner. An assistant whose encoder equals this model's is loaded without it.
    """
    precision = resolve_precision(device, dtype, compile)
    model_dir = resolve_model_dir(name_or_path, cache_dir=cache_dir, revision=revision)
    model = load_whisper(model_dir, dtype=precision.dtype, device=precision.device)
    if precision.int8_weights:
        int8_linears(model)
    draft = None if assistant is None else load_assistant(assistant, model, cache_dir=cache_dir)
    steps = compiled_steps(model, draft) if compile else None
    return Transcriber(model, load_tokenizer(model_dir), load_generation_defaults(model_dir), steps, draft)
