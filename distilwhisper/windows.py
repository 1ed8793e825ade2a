"""A batch of 30 s windows, from samples to each window's tokens: openai/whisper's DecodingTask.run as a function.

    pad to the compile bucket -> log-mel -> encoder -> the decoders' caches -> language detection -> prompts
      -> decoding (greedy, beam search or speculative; with timestamps, in passes) -> silence rule -> the padding dropped

Short inputs are one window each; long ones are cut into chunks, each a window (transcribe.py, longform.py), or
decoded one 30 s window after another (`decode_sequential`, sequential.py).
"""

from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch
from torch import Tensor

from .alignment import pass_times
from .audio import HOP_LENGTH, N_FRAMES, log_mel_spectrogram
from .beam_search import BeamSearch, beam_search
from .compiled import Steps, eager_steps, pad_to_bucket
from .decoding import Decoding, WindowResult, detect_language, greedy_decode, joined, passes_over
from .model import Whisper
from .plan import DecodePlan
from .sequential import Pass
from .speculative import Assistant, speculative_decode


@dataclass(frozen=True)
class Engine:
    """The network and how it runs: its steps (eager, or compiled with `compiled.compiled_steps`) and, for
    speculative decoding, a draft model. Which loop decodes: beam search when asked for; else greedy, or
    speculative with a draft model (fixed at load)."""

    model: Whisper
    steps: Steps
    assistant: Assistant | None = None

    @classmethod
    def eager(cls, model: Whisper, assistant: Assistant | None = None) -> "Engine":
        return cls(model, eager_steps(model, assistant), assistant)

    def prepare(self, mel: Tensor) -> Tensor:
        """Encode (batch, n_mels, 3000) log-mel and make every decoder's caches hold it: what each pass starts with."""
        features = self.steps.for_batch(len(mel)).encoder(mel)
        self.model.decoder.setup_caches(features)
        if self.assistant is not None:
            self.assistant.setup_caches(self.model.decoder, mel, features)
        return features

    def decode(self, prompts: list[list[int]], decoding: Decoding, beams: BeamSearch | None = None) -> list[WindowResult]:
        """One pass over the windows `prepare` encoded, one prompt each; `beams`: by beam search."""
        steps = self.steps.for_batch(len(prompts))
        if beams is not None:
            assert self.assistant is None, "Transcriber.plan refuses beam search with an assistant"
            return beam_search(self.model, prompts, decoding, beams, steps.decoder)
        if self.assistant is None:
            return greedy_decode(self.model, prompts, decoding, steps.decoder)
        return speculative_decode(self.model, self.assistant, prompts, decoding, steps.decoder, steps.draft, steps.schedule)


@torch.inference_mode()
def decode_windows(engine: Engine, plan: DecodePlan, waveforms: Tensor, lengths: list[int] | None = None) -> list[WindowResult]:
    """(batch, N_SAMPLES) samples -> each window's result: its generated tokens (timestamps among them when the plan
    asks for them), the language it was decoded in (detected per window when the plan has none), and no tokens at
    all for a window the silence rule finds silent. With word timing, `lengths` are the samples of real audio in
    each window (the rest is padding), and each token's time is in `token_times`."""
    model, batch = engine.model, len(waveforms)
    mel = features(engine, waveforms)
    prompts, languages = first_prompts(engine, plan, mel)
    results = engine.decode(prompts, plan.decoding, plan.beams)
    if plan.timestamp_begin is not None:
        align = None
        if plan.alignment is not None:
            frames = [-(-n // HOP_LENGTH) for n in (lengths or [waveforms.shape[1]] * batch)]  # as the mask counts them
            align = partial(align_pass, model, plan, prompts, frames)
        passes = passes_over(partial(engine.decode, decoding=plan.decoding, beams=plan.beams), engine.prepare, mel,
                             results, prompts, plan.timestamp_begin, align)  # fmt: skip
        results = [joined(row) for row in passes]
    return [silence_rule(r, language, plan.no_speech_threshold) for r, language in zip(results[:batch], languages)]


@torch.inference_mode()
def decode_sequential(engine: Engine, plan: DecodePlan, waveforms: Tensor, lengths: list[int]) -> list[list[tuple[Pass, WindowResult]]]:
    """(batch, samples) whole inputs over 30 s, zero-padded to the longest, `lengths` samples each -> each input's
    passes, one 30 s window after another (sequential.py), with timestamps (the plan's); the language is detected
    from each input's first window when the plan has none, as generate() does, and a pass the silence rule finds
    silent keeps no tokens."""
    assert plan.timestamp_begin is not None, "sequential long form seeks by timestamps"
    mel = features(engine, waveforms)
    prompts, languages = first_prompts(engine, plan, mel[..., :N_FRAMES])
    first = engine.decode(prompts, plan.decoding, plan.beams)
    # Frames of audio as the feature extractor's attention mask counts them: every 160th sample of the batch's mask
    # (rounding up), less the last column when the longest input is not whole frames (the STFT's last frame dropped).
    frames = [min(-(-n // HOP_LENGTH), waveforms.shape[1] // HOP_LENGTH) for n in lengths]
    frames += frames[-1:] * (len(mel) - len(frames))  # the bucket's padding rows copy the last input
    passes = passes_over(partial(engine.decode, decoding=plan.decoding, beams=plan.beams), engine.prepare, mel, first,
                         prompts, plan.timestamp_begin, None, frames, plan.no_speech_threshold)  # fmt: skip
    return [[(done, replace(result, language=language)) for done, result in row] for row, language in zip(passes, languages)]


def features(engine: Engine, waveforms: Tensor) -> Tensor:
    """The batch's log-mel in the network's dtype, on its device, padded with copies of the last row to the batch the
    steps run (the padding is decoded, then dropped)."""
    weight = engine.model.decoder.embed_tokens.weight
    waveforms = pad_to_bucket(waveforms.to(weight.device), engine.steps)
    return log_mel_spectrogram(waveforms, engine.model.dims.n_mels).to(weight.dtype)


def first_prompts(engine: Engine, plan: DecodePlan, mel: Tensor) -> tuple[list[list[int]], list[str | None]]:
    """Encode the first windows' (batch, n_mels, 3000) log-mel into the caches; each row's prompt and language: the
    plan's, or the one detected for it."""
    engine.prepare(mel)
    detected: list[int | None] = [None] * len(mel)
    if plan.detect_from:
        detected = detect_language(engine.model, len(mel), plan.sot, list(plan.detect_from)).tolist()
    languages = [plan.language if token is None else plan.detect_from[token] for token in detected]
    return [plan.prompt(token) for token in detected], languages


def silence_rule(result: WindowResult, language: str | None, threshold: float | None) -> WindowResult:
    """The window's result in its language; no text where its no-speech probability is above `threshold`."""
    silent = threshold is not None and result.no_speech_prob > threshold
    return replace(result, tokens=[] if silent else result.tokens, truncated=result.truncated and not silent, language=language,
                   token_times=[] if silent else result.token_times)


def align_pass(model: Whisper, plan: DecodePlan, prompts: list[list[int]], frames: list[int], rows: list[int],
               results: list[WindowResult], seek: list[int]) -> list[np.ndarray]:  # fmt: skip
    """`decoding.Align` for a batch of windows with `frames` log-mel frames of real audio each: the token times of
    one pass over `rows` (a compiled batch's padding rows, the last ones, get none)."""
    eot, real = plan.decoding.eot, [k for k, row in enumerate(rows) if row < len(frames)]
    assert plan.alignment is not None and real == list(range(len(real))), "the padding rows come last"
    fed = [prompts[rows[k]] + results[k].tokens + ([] if results[k].truncated else [eot]) for k in real]
    times = pass_times(model.decoder, plan.alignment, fed, [frames[rows[k]] - seek[k] for k in real],
                       len(prompts[0]), eot) if real else []  # fmt: skip
    return times + [np.zeros(0, np.float32)] * (len(rows) - len(real))
