"""What users call: load a checkpoint once, then transcribe audio with it.

    model = distilwhisper.load_model("distil-whisper/distil-large-v2")
    result = model.transcribe("speech.wav")   # or bytes, 16 kHz samples, {"array": ..., "sampling_rate": ...}, a list
    print(result.text)
"""

import itertools
import math
import numbers
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeGuard, overload

import numpy as np
import torch

from .audio import (LOUDEST_SAMPLE, N_SAMPLES, SAMPLE_RATE, AudioStream, audio_duration, decode_audio, load_audio,
                    log_mel_spectrogram, pad_or_trim, resample, stream_audio, torch_ready)
from .compiled import Steps, compiled_steps, eager_steps
from .decoding import (DecodingResult, SuppressAtBegin, SuppressTokens, TimestampRules, decode_in_passes, detect_language,
                       greedy_decode)
from .errors import DistilWhisperError, is_whole_number
from .languages import language_code
from .longform import (
    DEFAULT_CHUNK_LENGTH, Chunk, chunk_samples, stitch, stitch_with_timestamps, transcribe_long,
)  # fmt: skip
from .model import Whisper
from .speculative import SELF_DRAFT, Assistant, load_assistant, speculative_decode
from .tokenizer import Tokenizer, load_tokenizer
from .weights import GenerationDefaults, load_generation_defaults, load_whisper, resolve_model_dir, usable_device

# a path, an audio file's bytes, 16 kHz samples, {"array" (or "raw"): samples, "sampling_rate": Hz},
# or datasets' undecoded {"bytes": ..., "path": ...}; or an AudioStream (what open_audio gives for a long file)
AudioInput = str | os.PathLike | bytes | bytearray | np.ndarray | torch.Tensor | Mapping[str, Any] | AudioStream
# transcribe(progress=...): called as progress(chunks_done, chunks_total or None, audio_seconds_done)
Progress = Callable[[int, int | None, float], None]

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}  # fmt: skip


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

    def to_dict(self) -> dict:
        """The fields as plain JSON types: what the CLI's JSON output holds, besides "file"."""
        return asdict(self)


def as_waveform(audio: AudioInput, name: str | None = None) -> torch.Tensor:
    """Any audio input as 16 kHz float32 samples of any length; anything else is a clear error.

    A path or an audio file's bytes is decoded; a dict holds samples at any rate, as the transformers ASR
    pipeline and datasets' Audio feature pass them: {"array" (or "raw"): samples, "sampling_rate": Hz};
    a bare array or tensor is 16 kHz samples. `name` stands for an input that is not a path (nor a dict with
    a "path") in messages; by default the input's type.
    """
    if isinstance(audio, (str, os.PathLike)):
        name = str(audio)
        samples = torch.from_numpy(load_audio(audio))
    elif isinstance(audio, (bytes, bytearray)):
        name = name or "bytes input"
        samples = torch.from_numpy(decode_audio(audio, name))
    elif isinstance(audio, Mapping):
        name = str(audio.get("path") or name or "dict input")
        samples = dict_samples(audio, name)
    elif isinstance(audio, (np.ndarray, torch.Tensor)):
        name = name or f"{type(audio).__name__} input"
        samples = mono_samples(audio, name, "1-D float samples at 16 kHz")
    else:
        raise DistilWhisperError(
            f"cannot transcribe {type(audio).__name__} input: pass a path, an audio file's bytes, a numpy array or torch "
            "tensor of 16 kHz samples, or a dict of samples and their 'sampling_rate'"
        )
    if samples.numel() == 0:
        raise DistilWhisperError(f"{name}: the audio is empty")
    peak = float(samples.abs().max())  # NaN if any sample is
    if not math.isfinite(peak):
        raise DistilWhisperError(f"{name}: the audio holds NaN or infinite samples")
    if peak > LOUDEST_SAMPLE:  # the log-mel frontend would refuse the whole batch, not knowing which input
        raise DistilWhisperError(f"{name}: the audio is far too loud (samples up to {peak:.3g}; they belong in [-1, 1])")
    return samples


def list_item_name(item: AudioInput, place: int) -> str | None:
    """An item of a list that is no file is named by its place, so that an error says which one it is."""
    return None if isinstance(item, (str, os.PathLike, AudioStream)) else f"input {place} ({type(item).__name__})"


def open_audio(audio: AudioInput, name: str | None = None) -> torch.Tensor | AudioStream:
    """as_waveform, except that a file longer than 30 s is not read whole: it comes back as an AudioStream whose
    blocks are decoded as long-form transcription asks for them (its first 30 s are already read), with the
    duration its header or metadata gives, for progress reports. Anything else is as_waveform's samples.
    """
    if isinstance(audio, AudioStream):
        return audio
    if not isinstance(audio, (str, os.PathLike)):
        return as_waveform(audio, name)
    name = name or str(audio)
    blocks = finite_blocks(stream_audio(audio, name=name), name)
    head, n_samples = [], 0
    for block in blocks:  # up to one sample past 30 s: short or long?
        head.append(block)
        n_samples += len(block)
        if n_samples > N_SAMPLES:
            return AudioStream(name, itertools.chain(head, blocks), audio_duration(audio))
    return torch.from_numpy(np.concatenate(head))  # stream_audio gives at least one sample


def finite_blocks(blocks: Iterator[np.ndarray], name: str) -> Iterator[np.ndarray]:
    for block in blocks:
        if not np.isfinite(block).all():  # float WAVs can hold them (every decoder clips the rest to [-1, 1])
            raise DistilWhisperError(f"{name}: the audio holds NaN or infinite samples")
        yield block


def is_short(audio: torch.Tensor | AudioStream) -> TypeGuard[torch.Tensor]:
    """Fits one 30 s window: decoded whole, not in chunks."""
    return isinstance(audio, torch.Tensor) and len(audio) <= N_SAMPLES


def dict_samples(audio: Mapping, name: str) -> torch.Tensor:
    """{"array" or "raw": samples, "sampling_rate": Hz} -> 16 kHz samples; other keys ("path", ...) are ignored.

    Also datasets' undecoded form, `Audio(decode=False)`: {"bytes": the file's bytes or None, "path": its path}.
    """
    if "bytes" in audio and not {"array", "raw"} & audio.keys():
        if isinstance(audio["bytes"], (bytes, bytearray)):
            return torch.from_numpy(decode_audio(audio["bytes"], name))
        if audio["bytes"] is None and isinstance(audio.get("path"), (str, os.PathLike)):
            return torch.from_numpy(load_audio(audio["path"]))
        raise DistilWhisperError(f"{name}: 'bytes' must be an audio file's bytes, or None beside a 'path' to read")
    keys = [key for key in ("array", "raw") if key in audio]
    if len(keys) != 1 or "sampling_rate" not in audio:
        raise DistilWhisperError(
            f"{name}: expected the samples under 'array' (or 'raw') and their rate under 'sampling_rate', "
            f"got the keys {', '.join(map(repr, audio)) or 'none'}"
        )
    array, rate = audio[keys[0]], audio["sampling_rate"]
    if not isinstance(array, (np.ndarray, torch.Tensor)):
        raise DistilWhisperError(f"{name}: '{keys[0]}' must be a numpy array or a torch tensor, got a {type(array).__name__}")
    if not is_whole_number(rate):
        raise DistilWhisperError(f"{name}: 'sampling_rate' must be a whole number of Hz, got {rate!r}")
    # (channels, samples), as datasets and the pipeline give multichannel audio; at most 2 rows, so that a
    # (samples, channels) array is refused rather than averaged along the wrong axis.
    samples = mono_samples(array, name, "float samples shaped (samples,) or (channels, samples) with 1 or 2 channels", 2)
    return torch.from_numpy(resample(samples.detach().cpu().numpy(), int(rate), name))


def mono_samples(array: np.ndarray | torch.Tensor, name: str, expected: str, max_channels: int = 0) -> torch.Tensor:
    """Float (or int16) samples as float32; (channels, samples) with up to `max_channels` rows is averaged.

    `expected` says what was wanted when the array is not that.
    """
    if isinstance(array, np.ndarray):
        if array.dtype.kind not in "fiu":
            raise DistilWhisperError(f"{name}: expected {expected}, got an array of {array.dtype}")
        array = torch_ready(array)
    samples = torch.as_tensor(array)
    if samples.layout != torch.strided or samples.is_meta:  # sparse samples, or a tensor with no data
        raise DistilWhisperError(f"{name}: expected {expected}, got a {str(samples.layout).removeprefix('torch.')} "
                                 f"{samples.device.type} tensor")  # fmt: skip
    shape_ok = samples.ndim == 1 or (samples.ndim == 2 and 1 <= samples.shape[0] <= max_channels)
    if not shape_ok or not (samples.is_floating_point() or samples.dtype == torch.int16):
        raise DistilWhisperError(f"{name}: expected {expected}, got {samples.dtype} of shape {tuple(samples.shape)}")
    samples = samples.float() / 32768 if samples.dtype == torch.int16 else samples.float()
    return samples.mean(0) if samples.ndim == 2 else samples


class Transcriber:
    """A loaded checkpoint: the network, its tokenizer and its decoding defaults.

    One Transcriber decodes one batch at a time: the decoder's key/value caches are preallocated buffers
    on the model (fixed shapes, so the step can become a CUDA graph), so concurrent `transcribe` calls from
    several threads wait for each other rather than overwrite each other's caches.

    `steps` run the encoder and the decoder step: the model's own (eager) by default, or `compiled_steps(model)`.
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
        self.steps = steps or eager_steps(model)
        self.assistant = assistant  # a draft model: decoding is then speculative, with the same result
        self.tokenizer = tokenizer
        self.defaults = defaults
        self.rules = [SuppressTokens(defaults.suppress_tokens), SuppressAtBegin(defaults.begin_suppress_tokens)]
        # What detection chooses from: generation_config's lang_to_id, as in transformers, else every language token.
        self.language_tokens = list(defaults.language_tokens) or [tokenizer.language_token(c) for c in tokenizer.language_codes]
        # Last: its "timestamps beat any text token" test reads the logits the other rules left.
        self.timestamp_rules = TimestampRules(tokenizer.eot, tokenizer.no_timestamps, defaults.max_initial_timestamp_index)
        self.lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return self.model.decoder.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.decoder.embed_tokens.weight.dtype

    @property
    def default_batch_size(self) -> int:
        """What batch_size=None means: 16 windows on a GPU, 8 on the CPU.

        On the CPU the encoder's work grows with the batch, so batching pays only in the decoder loop's per-step
        overhead, which 8 windows mostly amortise (the default before there was a choice); a GPU needs more windows
        to keep it busy, and 16 is what Distil-Whisper's long-form recipe uses. bench/long_form.py measures others.
        """
        return 16 if self.device.type == "cuda" else 8

    @property
    def most_previous_text(self) -> int:
        """The most tokens of previous text Whisper reads before a window: 223, just under half its decoder.
        openai/whisper keeps that many of a longer prompt; generate() counts max_length after that many."""
        return self.model.dims.n_text_ctx // 2 - 1

    @property
    def is_multilingual(self) -> bool:
        """generation_config's `is_multilingual`, else the vocabulary: English-only (.en) checkpoints have 51864
        tokens (<|endoftext|> = 50256), multilingual ones 51865 or more (openai/whisper's rule)."""
        if self.defaults.is_multilingual is not None:
            return self.defaults.is_multilingual
        return self.model.dims.n_vocab >= 51865

    def language_and_task(self, language: str | None, task: str | None) -> tuple[str | None, str | None]:
        """The caller's language and task, else the checkpoint's, resolved as transformers' generate() resolves them.

        generation_config's `language`/`task` come first; only when it sets neither do its older
        `forced_decoder_ids` speak. Without a language from any of them: None, each input's language is
        detected (`decode_windows`). Without a task from any of them: transcribe. (Here we part from
        transformers on purpose: when nothing names a task, its generate() leaves the task token out,
        <|startoftranscript|><|xx|><|notimestamps|>, a prompt Whisper was never trained on; whisper-base then
        repeats one word until max_length on the JFK clip. openai/whisper and faster-whisper always
        put the task in.) English-only checkpoints transcribe English and nothing else.
        """
        if not self.is_multilingual:
            if (language is not None and language_code(language) != "en") or task not in (None, "transcribe"):
                asked = f"language '{language}'" if task in (None, "transcribe") else f"task '{task}'"
                raise DistilWhisperError(f"this checkpoint is English-only: it can only transcribe English, not {asked}")
            return "en", "transcribe"
        language, task = language or self.defaults.language, task or self.defaults.task
        if language is None and task is None:
            for _, token in self.defaults.forced_decoder_ids:
                language = self.tokenizer.language_of(token) or language
                task = self.tokenizer.task_of(token) or task
        return language_code(language) if language else None, task or "transcribe"

    def prompt(
        self, language: str | None = None, task: str | None = None, max_new_tokens: int | None = None,
        timestamps: bool = False, initial_prompt: str | None = None,
    ) -> list[int]:  # fmt: skip
        """The decoder prompt, once the options are known to fit the checkpoint: <|startoftranscript|>, the
        language, the task, <|notimestamps|> (left out for timestamps); on English-only checkpoints, neither
        language nor task (they were trained without). Where the language is left to detection, <|en|> holds
        its place (right after <|startoftranscript|>), which `decode_windows` gives each input's detected language.

        `initial_prompt` text goes first, after <|startofprev|> (`Tokenizer.previous_text`), as transformers'
        generate(prompt_ids=...) puts it. Whisper was trained with at most half its decoder positions of previous
        text (openai/whisper keeps only that much of a longer prompt); a longer one is refused, not cut."""
        language, task = self.language_and_task(language, task)
        if self.is_multilingual:
            prompt = self.tokenizer.sot_sequence(language or "en", task, timestamps)
        else:
            prompt = self.tokenizer.sot_sequence(None, None, timestamps)
        if initial_prompt is not None:
            if not isinstance(initial_prompt, str):
                raise DistilWhisperError(f"initial_prompt must be a string, got {initial_prompt!r}")
            previous = self.tokenizer.previous_text(initial_prompt)  # <|startofprev|> and the text's tokens
            if len(previous) - 1 > self.most_previous_text:
                raise DistilWhisperError(
                    f"initial_prompt must be at most {self.most_previous_text} tokens long, got {len(previous) - 1} "
                    f"(Whisper reads at most half its {self.model.dims.n_text_ctx} decoder positions of previous text)"
                )
            prompt = previous + prompt
        if max_new_tokens is not None and not 1 <= max_new_tokens <= self.model.dims.n_text_ctx - len(prompt):
            raise DistilWhisperError(
                f"max_new_tokens must be between 1 and {self.model.dims.n_text_ctx - len(prompt)} "
                f"(the decoder holds {self.model.dims.n_text_ctx} positions, the prompt takes {len(prompt)})"
            )
        return prompt

    def default_max_new_tokens(self, prompt: list[int]) -> int:
        """transformers' generate() default: the checkpoint's max_length (448 in Whisper's) counted after the
        prompt's first `most_previous_text` tokens, at most what the decoder holds after the prompt."""
        n_ctx = self.model.dims.n_text_ctx
        if self.defaults.max_length is None:
            return n_ctx - len(prompt)
        return max(1, min(self.defaults.max_length + min(self.most_previous_text, len(prompt)), n_ctx) - len(prompt))

    @overload
    def transcribe(
        self,
        audio: AudioInput,
        language: str | None = None,
        task: str | None = None,
        max_new_tokens: int | None = None,
        no_speech_threshold: float | None = 0.6,
        batch_size: int | None = None,
        chunk_length: float = DEFAULT_CHUNK_LENGTH,
        progress: Progress | None = None,
        return_timestamps: bool = False,
        initial_prompt: str | None = None,
    ) -> Transcription: ...

    @overload
    def transcribe(
        self,
        audio: list[AudioInput],
        language: str | None = None,
        task: str | None = None,
        max_new_tokens: int | None = None,
        no_speech_threshold: float | None = 0.6,
        batch_size: int | None = None,
        chunk_length: float = DEFAULT_CHUNK_LENGTH,
        progress: Progress | None = None,
        return_timestamps: bool = False,
        initial_prompt: str | None = None,
    ) -> list[Transcription]: ...

    @torch.inference_mode()
    def transcribe(
        self,
        audio: AudioInput | list[AudioInput],
        language: str | None = None,
        task: str | None = None,
        max_new_tokens: int | None = None,
        no_speech_threshold: float | None = 0.6,
        batch_size: int | None = None,
        chunk_length: float = DEFAULT_CHUNK_LENGTH,
        progress: Progress | None = None,
        return_timestamps: bool = False,
        initial_prompt: str | None = None,
    ) -> Transcription | list[Transcription]:
        """Greedy transcription. A list comes back as a list, in its order, decoded `batch_size` inputs at a
        time (each batch's audio is read only when its turn comes, so memory depends on the batch size, not on
        the length of the list). `batch_size=None`: `default_batch_size`, 8 on the CPU and 16 on a GPU.

        An input longer than 30 s is cut into `chunk_length`-second chunks (at most 30) overlapping by a sixth
        of that on each side, decoded `batch_size` chunks at a time, and stitched where the overlaps agree: the
        transformers ASR pipeline's chunked algorithm (see `longform`). `max_new_tokens` then holds per chunk.
        A long file is decoded as its chunks are reached, so memory does not grow with its length.
        `progress(chunks_done, chunks_total, audio_seconds_done)`, when given, is called for each long input
        before its first batch of chunks and after each; the total is None when the file does not say its length.

        `language` and `task` default to the checkpoint's own (generation_config.json); without a language
        there, each input's language is detected as transformers' generate() does (a long input's chunk by
        chunk, as the pipeline does), and `Transcription.language` says which. English-only (.en) checkpoints
        transcribe English only. `max_new_tokens` defaults to what fits the decoder, as in transformers; a result
        whose transcript that limit cut short has `truncated` set.

        An input whose no-speech probability is above `no_speech_threshold` is silence: empty text.
        openai/whisper also asks for an unlikely transcript (average log-probability below -1) before
        it drops one, which keeps the confident " you" Whisper hallucinates on digital silence; we don't.
        `no_speech_threshold=None` keeps whatever was decoded.

        `return_timestamps=True` decodes with Whisper's timestamp tokens and fills `segments`: (start, end, text)
        in seconds, as the transformers ASR pipeline's `chunks` (see `longform.stitch_with_timestamps`; a last
        segment the model left open ends at the end of the audio). `text` is then the segments' text joined.

        `initial_prompt`: text the model reads as the transcript before the audio (names, spellings, style), for
        every input and every chunk of a long one: transformers' generate(prompt_ids=get_prompt_ids(text)).
        """
        inputs = audio if isinstance(audio, list) else [audio]
        check_option_types(language=language, task=task, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           no_speech_threshold=no_speech_threshold)  # fmt: skip
        batch_size = self.default_batch_size if batch_size is None else batch_size
        if batch_size < 1:
            raise DistilWhisperError(f"batch_size must be at least 1, got {batch_size}")
        chunk_samples(chunk_length)  # a bad chunk_length fails before any work
        prompt = self.prompt(language, task, max_new_tokens, return_timestamps, initial_prompt)
        language = self.language_and_task(language, task)[0]  # None: detected input by input
        max_new_tokens = max_new_tokens or self.default_max_new_tokens(prompt)
        results = []
        for start in range(0, len(inputs), batch_size):
            sources = [open_audio(a, list_item_name(a, i) if isinstance(audio, list) else None)
                       for i, a in enumerate(inputs[start : start + batch_size], start)]  # fmt: skip
            short = [s for s in sources if is_short(s)]
            windows: Iterator = iter([])
            if short:
                # Tensors stay where they came from (a CUDA tensor may sit beside a file's samples): one device here.
                waveforms = torch.stack([pad_or_trim(s).to(self.device) for s in short])
                decoded, languages = self.decode_windows(waveforms, prompt, max_new_tokens, no_speech_threshold, language,
                                                         return_timestamps)  # fmt: skip
                rates = decoded.acceptance_rates or [None] * len(short)
                windows = iter(zip(decoded.tokens, decoded.avg_logprobs, decoded.no_speech_probs, decoded.truncated, rates, languages))
            for s in sources:  # the long ones, each decoded in chunks, in their place among the short ones
                if is_short(s):
                    tokens, avg_logprob, no_speech_prob, truncated, rate, detected = next(windows)
                    results.append(self.transcription([(tokens, Chunk(0, len(s), 0, 0))], len(s), detected, return_timestamps,
                                                      avg_logprob, no_speech_prob, truncated, rate))  # fmt: skip
                else:
                    results.append(transcribe_long(self, s, prompt, max_new_tokens, no_speech_threshold, language,
                                                   batch_size, chunk_length, progress, return_timestamps))  # fmt: skip
        return results if isinstance(audio, list) else results[0]

    def decode_windows(
        self, waveforms: torch.Tensor, prompt: list[int], max_new_tokens: int, no_speech_threshold: float | None,
        language: str | None, timestamps: bool = False,
    ) -> tuple[DecodingResult, list[str | None]]:  # fmt: skip
        """(batch, N_SAMPLES) samples -> each window's generated tokens (timestamps among them when asked for,
        decoded in passes as generate() does: `decode_in_passes`), and the language each was
        decoded in. A window the silence rule finds silent has no tokens.

        `language` None: each input's language is detected (one decoder step on the audio features) and
        put in its prompt's language place, right after <|startoftranscript|> (which an initial prompt's
        previous text comes before).
        """
        sot_index = prompt.index(self.tokenizer.sot)
        batch = len(waveforms)
        # Compiled steps have fixed batch sizes: fill the bucket with copies of the last input, decoded and dropped.
        waveforms = torch.cat([waveforms, waveforms[-1:].expand(self.steps.bucket(batch) - batch, -1)])
        with self.lock:
            mel = log_mel_spectrogram(waveforms.to(self.device), self.model.dims.n_mels).to(self.dtype)
            features = self.steps.encoder(mel)
            prompts, languages = [prompt] * len(waveforms), [language] * batch
            if language is None:
                detected = detect_language(self.model, features, self.tokenizer.sot, self.language_tokens).tolist()
                prompts = [[*prompt[: sot_index + 1], token, *prompt[sot_index + 2 :]] for token in detected]
                languages = [self.tokenizer.language_of(token) for token in detected[:batch]]
            eot, no_speech = self.tokenizer.eot, self.tokenizer.no_speech
            rules = [*self.rules, self.timestamp_rules] if timestamps else self.rules

            def decode_pass(mel: torch.Tensor, features: torch.Tensor, prompts: list[list[int]], caches_ready: bool) -> DecodingResult:
                # A timestamp pass after the first decodes only some windows: a batch no compiled step has.
                steps = self.steps if len(features) == self.steps.bucket(len(features)) else eager_steps(self.model)
                if self.assistant is not None:
                    draft_features = self.assistant.features(mel, features)
                    return speculative_decode(self.model, self.assistant, features, draft_features, prompts, eot, rules,
                                              max_new_tokens, no_speech, caches_ready=caches_ready, steps=steps,
                                              sot_index=sot_index)  # fmt: skip
                return greedy_decode(self.model, features, prompts, eot, rules, max_new_tokens, no_speech, caches_ready,
                                     steps.decoder, sot_index)  # fmt: skip

            if timestamps:
                decoded = decode_in_passes(decode_pass, self.model.encoder, mel, features, prompts,
                                           self.tokenizer.timestamp_begin, caches_ready=language is None)  # fmt: skip
            else:
                decoded = decode_pass(mel, features, prompts, language is None)
        silent = [no_speech_threshold is not None and p > no_speech_threshold for p in decoded.no_speech_probs[:batch]]
        decoded = replace(
            decoded,
            tokens=[[] if s else t for s, t in zip(silent, decoded.tokens)],
            avg_logprobs=decoded.avg_logprobs[:batch],
            no_speech_probs=decoded.no_speech_probs[:batch],
            truncated=[not s and t for s, t in zip(silent, decoded.truncated)],
            proposed=decoded.proposed and decoded.proposed[:batch],
            accepted=decoded.accepted and decoded.accepted[:batch],
        )
        return decoded, languages

    def transcription(
        self, pieces: list[tuple[list[int], Chunk]], n_samples: int, language: str | None, timestamps: bool,
        avg_logprob: float, no_speech_prob: float, truncated: bool, acceptance_rate: float | None = None,
    ) -> Transcription:  # fmt: skip
        """The Transcription of an input of `n_samples` from its windows' tokens, each with the chunk of the
        input it heard (one window with the whole input when it is short)."""
        if timestamps:
            audio_end = round(n_samples / SAMPLE_RATE, 2)
            spans = stitch_with_timestamps(pieces, self.tokenizer.timestamp_begin, self.tokenizer.eot, audio_end)
            segments = [Segment(s.start, s.end, self.tokenizer.decode(s.tokens)) for s in spans]
            text, tokens = "".join(s.text for s in segments), [t for s in spans for t in s.tokens]
        else:
            tokens = stitch([[t for t in window if t < self.tokenizer.eot] for window, _ in pieces])
            text, segments = self.tokenizer.decode(tokens), []
        return Transcription(text, tokens, language, avg_logprob, no_speech_prob, truncated, acceptance_rate, segments)


def check_option_types(
    language: Any, task: Any, max_new_tokens: Any, batch_size: Any, no_speech_threshold: Any
) -> None:
    """Refuse an option of the wrong kind before any work, naming it: left alone, it fails deep in decoding with
    torch's words (`full(): argument 'size' failed to unpack`), after the encoder has run, or not at all (a NaN
    threshold calls nothing silent)."""
    for name, text in (("language", language), ("task", task)):
        if text is not None and not isinstance(text, str):
            raise DistilWhisperError(f"{name} must be a string, got {text!r}")
    for name, count in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if count is not None and not is_whole_number(count):
            raise DistilWhisperError(f"{name} must be a whole number, got {count!r}")
    threshold = no_speech_threshold
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or threshold != threshold):
        raise DistilWhisperError(f"no_speech_threshold must be a probability, or None to keep every transcript, got {threshold!r}")


def resolve_device_dtype(device: str | torch.device | None, dtype: str | torch.dtype | None) -> tuple[torch.device, torch.dtype]:
    """Defaults ("auto"): the GPU in float16 when there is one, else the CPU in float32."""
    device = usable_device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        if dtype not in DTYPES:
            raise DistilWhisperError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    elif dtype not in DTYPES.values():  # an integer, complex or float8 dtype, or not a dtype at all
        raise DistilWhisperError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16 (or their names), got {dtype!r}")
    if device.type == "cpu" and dtype in HALF_PROBES and not cpu_has_half_arithmetic(dtype):
        # As faster-whisper does: refuse rather than run 15-60x slower than float32 (measured on AVX2).
        raise DistilWhisperError(
            f"this CPU has no native {str(dtype).removeprefix('torch.')} matrix arithmetic (it would run many times "
            "slower than float32): use float32 on the CPU"
        )
    return device, dtype


# oneDNN's own probes for the instructions (AVX512-BF16/FP16, AMX) that make half precision fast on a CPU.
HALF_PROBES = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}


def cpu_has_half_arithmetic(dtype: torch.dtype) -> bool:
    try:
        return bool(getattr(torch.ops.mkldnn, HALF_PROBES[dtype])())
    except (AttributeError, RuntimeError):  # a torch without the probe: assume the slow path
        return False


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

    `device` and `dtype` default to "auto": the GPU in float16 when there is one, else the CPU in float32.
    `compile=True` compiles the decoder step, and on a GPU the encoder too (torch.compile; CUDA graphs on a
    GPU): each batch size bucket (1, 2, 4, 8...) pays a compilation on first use; on a CPU it hardly pays
    (the README says when it does). `assistant` (a checkpoint folder, hub id or short name, e.g.
    distil-large-v2 for whisper-large-v2; or "int8", this model's own decoder with int8 weights, CPU only)
    makes decoding speculative: the assistant's decoder drafts, this model verifies, and the result is this
    model's own greedy output, sooner. An assistant whose encoder equals this model's is loaded without it.
    """
    device, dtype = resolve_device_dtype(device, dtype)
    model_dir = resolve_model_dir(name_or_path, cache_dir=cache_dir, revision=revision)
    model = load_whisper(model_dir, dtype=dtype, device=device)
    draft = None if assistant is None else load_assistant(assistant, model, cache_dir=cache_dir)
    # The int8 self-draft's quantised layers do not compile: it drafts eagerly.
    compiled_draft = draft.decoder if draft is not None and str(assistant) != SELF_DRAFT else None
    steps = compiled_steps(model, compiled_draft) if compile else None
    return Transcriber(model, load_tokenizer(model_dir), load_generation_defaults(model_dir), steps, draft)

