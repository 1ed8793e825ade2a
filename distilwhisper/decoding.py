"""Greedy decoding with Whisper's logit rules, batched, over the decoder's static cache.

Each rule is a tiny class with one method, `apply(logits, generated)`: it edits the (batch, vocab) logits
in place, knowing the (batch, step) tokens generated so far (the prompt excluded), so rules can be tested
one by one and composed in a list. The loop itself reads like the algorithm: prefill the prompt, then one token at a time.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .audio import N_FRAMES, TIME_PRECISION
from .model import Whisper
from .sequential import Pass


class Rule(Protocol):
    def apply(self, logits: Tensor, generated: Tensor) -> None: ...


# A decoder step, as Decoder.forward takes it: (tokens, input_pos, filled) -> logits.
Step = Callable[[Tensor, Tensor, int | None], Tensor]


class SuppressTokens:
    """Never emit these tokens (non-speech symbols, task tokens...): the checkpoint's `suppress_tokens`."""

    def __init__(self, tokens: list[int] | tuple[int, ...]):
        self.tokens = torch.tensor(sorted(set(tokens)), dtype=torch.long)

    def apply(self, logits: Tensor, generated: Tensor) -> None:
        if self.tokens.device != logits.device:  # moved once, not copied to the GPU every step
            self.tokens = self.tokens.to(logits.device)
        logits.index_fill_(1, self.tokens, -torch.inf)


class SuppressAtBegin:
    """Nor these as the first token (a blank or an immediate end): the checkpoint's `begin_suppress_tokens`."""

    def __init__(self, tokens: list[int] | tuple[int, ...]):
        self.suppress = SuppressTokens(tokens)

    def apply(self, logits: Tensor, generated: Tensor) -> None:
        if generated.shape[1] == 0:
            self.suppress.apply(logits, generated)


# How often the loop asks whether every sequence has ended, by device type. The answer waits for the device,
# so on a GPU it is asked every 8 steps only (finished rows keep emitting eot meanwhile: same tokens).
END_CHECK_EVERY = {"cpu": 1}


class TimestampRules:
    """Whisper's grammar for timestamp tokens, as transformers' WhisperTimeStampLogitsProcessor applies it.

    A transcript with timestamps reads <|0.00|> text <|2.40|><|2.40|> text <|5.00|>: each segment of
    text opens and closes with a timestamp (the close of one segment and the open of the next are a pair).
    Per sequence, from the tokens it generated so far:

    - <|notimestamps|> never comes;
    - the first token is a timestamp, at most `max_initial_timestamp_index` steps (0.02 s each) in;
    - after two timestamps in a row, or the first one, comes text (or the end); after text and one
      timestamp comes a second timestamp (or the end), not text: timestamps come in pairs;
    - timestamps never go back: the second of a pair may repeat the first, any other timestamp must be
      later than the last one;
    - when all timestamps together are more likely than the most likely text token, one of them is taken.
    """

    def __init__(self, eot: int, no_timestamps: int, max_initial_timestamp_index: int | None):
        self.eot = eot  # text tokens lie below it
        self.no_timestamps = no_timestamps
        self.timestamp_begin = no_timestamps + 1  # <|0.00|>; the vocabulary ends with <|30.00|>
        self.max_initial_timestamp_index = max_initial_timestamp_index

    def apply(self, logits: Tensor, generated: Tensor) -> None:
        begin, step = self.timestamp_begin, generated.shape[1]
        logits[:, self.no_timestamps] = -torch.inf
        if step == 0:
            logits[:, :begin] = -torch.inf
            if self.max_initial_timestamp_index is not None:
                logits[:, begin + self.max_initial_timestamp_index + 1 :] = -torch.inf
        else:
            is_timestamp = generated >= begin
            last = is_timestamp[:, -1]
            penultimate = is_timestamp[:, -2] if step > 1 else torch.ones_like(last)
            logits[:, begin:].masked_fill_((last & penultimate)[:, None], -torch.inf)  # a pair: text or the end next
            logits[:, : self.eot].masked_fill_((last & ~penultimate)[:, None], -torch.inf)  # one: its partner next
            # The latest timestamp so far (by position: the positions of timestamps, 1-based, else 0).
            positions = torch.arange(1, step + 1, device=generated.device)
            latest = (is_timestamp * positions).argmax(dim=1)
            latest_timestamp = generated.gather(1, latest[:, None])[:, 0]
            # A partner may equal the timestamp it closes; anything else must come later.
            lowest = torch.where(last & ~penultimate, latest_timestamp, latest_timestamp + 1)
            lowest = torch.where(is_timestamp.any(dim=1), lowest, begin)
            timestamps = torch.arange(begin, logits.shape[1], device=logits.device)
            logits[:, begin:].masked_fill_(timestamps < lowest[:, None], -torch.inf)
        logprobs = logits.log_softmax(dim=-1)
        timestamps_win = logprobs[:, begin:].logsumexp(dim=-1) > logprobs[:, :begin].max(dim=-1).values
        logits[:, :begin].masked_fill_(timestamps_win[:, None], -torch.inf)


@dataclass(frozen=True)
class Decoding:
    """What a decoding loop is asked, besides the model and the prompts: when to stop and how to shape the logits.

    The prompts (one per row, all of one length) carry <|startoftranscript|> at `sot_index`, after the previous
    text of an initial prompt if any: the logits there give the no-speech probability, of the `no_speech` token.
    """

    eot: int
    max_new_tokens: int
    rules: tuple[Rule, ...] = ()
    no_speech: int | None = None
    sot_index: int = 0


@dataclass(frozen=True)
class WindowResult:
    """What decoding one 30 s window gives: its generated tokens (timestamps among them, when asked for), their
    confidence, whether max_new_tokens stopped them, the language it was decoded in and, with a draft model,
    how many draft tokens were proposed and accepted."""

    tokens: list[int]  # the tokens generated before the end token
    avg_logprob: float  # mean log-probability of those tokens and the end token
    no_speech_prob: float  # probability of `no_speech` right after <|startoftranscript|>
    truncated: bool  # max_new_tokens, not the end token, stopped the sequence
    language: str | None = None
    proposed: int = 0  # speculative decoding: draft tokens proposed
    accepted: int = 0  # and of those, the ones the main model agreed with
    # With word timing: when each of `tokens` was spoken, in seconds from the window's start (alignment.py).
    token_times: list[float] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted / proposed draft tokens; None when none was proposed (no draft model)."""
        return self.accepted / self.proposed if self.proposed else None


def row_results(rows: list[list[int]], eot: int, sum_logprobs: list[float], no_speech_probs: list[float]) -> list[WindowResult]:
    """Each row's generated tokens (an end token and what follows it cut off) as a WindowResult."""
    results = []
    for row, total, no_speech in zip(rows, sum_logprobs, no_speech_probs):
        tokens = row[: row.index(eot)] if eot in row else row
        # Like openai/whisper, the end token counts in the average.
        results.append(WindowResult(tokens, total / (len(tokens) + 1), no_speech, eot not in row))
    return results


def no_speech_probs(prompt_logits: Tensor, decoding: Decoding) -> list[float]:
    """Each row's probability of `decoding.no_speech` at <|startoftranscript|> (NaN without such a token)."""
    if decoding.no_speech is None:
        return [float("nan")] * len(prompt_logits)
    return prompt_logits[:, decoding.sot_index].float().softmax(dim=-1)[:, decoding.no_speech].tolist()


@torch.inference_mode()
def detect_language(model: Whisper, batch: int, sot: int, language_tokens: list[int] | tuple[int, ...]) -> Tensor:
    """The likeliest language token of each of the `batch` rows whose audio features the decoder's caches hold
    (`model.decoder.setup_caches(features)` first), as transformers' generate() detects it when no language is
    given: the logits after <|startoftranscript|> alone, every token but `language_tokens` masked (no other
    logit rule), argmax. One decoder step.
    """
    device = model.decoder.embed_tokens.weight.device
    logits = model.decoder(torch.full((batch, 1), sot, device=device), torch.zeros(1, dtype=torch.long, device=device), 1)
    candidates = torch.tensor(sorted(language_tokens), device=device)  # ascending: ties go to the lowest id, as in argmax
    return candidates[logits[:, -1, candidates].argmax(dim=-1)]


@torch.inference_mode()
def greedy_decode(
    model: Whisper, prompts: list[list[int]], decoding: Decoding, step: Step | None = None
) -> list[WindowResult]:
    """Decode every row until it emits `decoding.eot` or `decoding.max_new_tokens` are generated.

    The decoder's caches hold the rows' audio features (`model.decoder.setup_caches(features)` first), one row
    per prompt. `step(tokens, input_pos, filled)` runs the one-token steps after the prompt: `model.decoder` by
    default, or its compiled twin (`compiled.compiled_steps`).
    """
    step = model.decoder if step is None else step
    batch, device, max_new_tokens = len(prompts), model.decoder.embed_tokens.weight.device, decoding.max_new_tokens
    prompt_tokens = torch.tensor(prompts, device=device)
    prompt_length = prompt_tokens.shape[1]
    prompt_logits = model.decoder(prompt_tokens, torch.arange(prompt_length, device=device), prompt_length)
    no_speech = no_speech_probs(prompt_logits, decoding)
    logits = prompt_logits[:, -1]

    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    sum_logprobs = torch.zeros(batch, device=device)
    generated = torch.full((batch, max_new_tokens), decoding.eot, device=device)
    positions = torch.arange(prompt_length, prompt_length + max_new_tokens, device=device)  # sliced, never built per step
    check_every = END_CHECK_EVERY.get(device.type, 8)
    for i in range(max_new_tokens):
        logits = logits.float()
        for rule in decoding.rules:
            rule.apply(logits, generated[:, :i])
        next_tokens = torch.where(finished, decoding.eot, logits.argmax(dim=-1))
        logprobs = logits.log_softmax(dim=-1).gather(1, next_tokens[:, None])[:, 0]
        sum_logprobs += torch.where(finished, 0.0, logprobs)
        generated[:, i] = next_tokens
        finished |= next_tokens == decoding.eot
        if i == max_new_tokens - 1 or (i % check_every == check_every - 1 and finished.all()):
            break
        logits = step(next_tokens[:, None], positions[i : i + 1], prompt_length + i + 1)[:, -1]
    return row_results(generated[:, : i + 1].tolist(), decoding.eot, sum_logprobs.tolist(), no_speech)


def finished_segments(tokens: list[int], timestamp_begin: int) -> tuple[list[int], int | None]:
    """What a pass over a window keeps of its tokens, and where the next pass starts (in 0.02 s steps;
    None: the window is done). transformers' generate(return_timestamps=True) runs such passes.

    A pass is trusted up to its last pair of timestamps (the end of one segment, the start of the next):
    what follows without a closing timestamp was cut off, so it is dropped and the next pass starts at
    the pair. A pass that ends with a timestamp after text, or has no pair at all, finishes the window.

        <|0.00|> a <|2.00|><|2.00|> b           ->  <|0.00|> a <|2.00|><|2.00|>, next pass from 2.00 s
        <|0.00|> a <|2.00|><|2.00|> b <|3.00|>  ->  all of it, done
    """
    is_timestamp = [t >= timestamp_begin for t in tokens]
    pairs = [i for i in range(1, len(tokens)) if is_timestamp[i - 1] and is_timestamp[i]]
    if not pairs or is_timestamp[-2:] == [False, True]:
        return tokens, None
    return tokens[: pairs[-1] + 1], tokens[pairs[-1] - 1] - timestamp_begin


# Word timing for a pass: (the windows decoded, their results, where the pass started in log-mel frames) -> each
# window's token times in seconds from the pass's start, one per generated token (alignment.pass_times); the
# decoder's caches still hold the pass's audio.
Align = Callable[[list[int], list[WindowResult], list[int]], list[np.ndarray]]


def joined(passes: list[tuple[Pass, WindowResult]]) -> WindowResult:
    """A window's passes as one result: their kept tokens and token times one after the other, the first pass's
    confidence, truncated if any was, every pass's draft tokens."""
    results = [result for _, result in passes]
    return replace(results[0], tokens=[t for r in results for t in r.tokens], truncated=any(r.truncated for r in results),
                   proposed=sum(r.proposed for r in results), accepted=sum(r.accepted for r in results),
                   token_times=[t for r in results for t in r.token_times])  # fmt: skip


@torch.inference_mode()
def passes_over(
    decode: Callable[[list[list[int]]], list[WindowResult]],
    prepare: Callable[[Tensor], object],
    mel: Tensor,
    first: list[WindowResult],
    prompts: list[list[int]],
    timestamp_begin: int,
    align: Align | None = None,
    frames: list[int] | None = None,
    no_speech_threshold: float | None = None,
) -> list[list[tuple[Pass, WindowResult]]]:
    """Decoding of (batch, n_mels, frames) log-mel with timestamp tokens, in passes as transformers'
    generate(return_timestamps=True) runs them: each row's passes over `frames[row]` frames of its log-mel (default:
    all of `mel`, one 30 s window). `first` is the first pass's results over the first 3000 frames (`decode(prompts)`
    with TimestampRules among the rules), `prompts` one prompt per row; each later pass decodes the 3000 frames from
    where the one before left off (the audio's end zero-padded), encoded and made the caches' audio by
    `prepare(window)`, its timestamps counting from there, until the row's frames are all heard. A short input's
    window is its passes `joined`. A pass that stops mid-speech leaves
    off at its last pair of timestamps (`finished_segments`); one that ends on a single timestamp, or has no
    pair, leaves off after what it heard; so does one that would start the same pass again (a last pair at 0.00 s).
    With `no_speech_threshold`, a pass more likely silence than that keeps no tokens and leaves off after what
    it heard (openai/whisper's skip of a silent window).

    Each pass comes with its WindowResult: its kept tokens and, with `align`, their times (taken before the next
    pass replaces the audio), each offset by where the pass started, in float32 as generate() adds them.
    """
    frames = frames or [mel.shape[-1]] * len(first)
    passes: list[list[tuple[Pass, WindowResult]]] = [[] for _ in first]
    seek = [0] * len(first)
    rows, decoded = list(range(len(first))), first
    while rows:
        unfinished = []
        times = align(rows, decoded, [seek[r] for r in rows]) if align is not None else [np.zeros(0)] * len(rows)
        for row, result, pass_times in zip(rows, decoded, times):
            heard = min(N_FRAMES, frames[row] - seek[row])
            silent = no_speech_threshold is not None and result.no_speech_prob > no_speech_threshold
            kept, resume = ([], None) if silent else finished_segments(result.tokens, timestamp_begin)
            offset = np.float32(seek[row] * TIME_PRECISION / 2)  # 2 log-mel frames per 0.02 s step
            kept_times = (pass_times[: len(kept)] + offset).tolist()
            kept_result = replace(result, tokens=kept, token_times=kept_times)
            passes[row].append((Pass(kept, seek[row], heard, silent), kept_result))
            seek[row] += 2 * resume if resume else heard  # 2 log-mel frames per timestamp step
            if seek[row] < frames[row]:
                unfinished.append(row)
        rows = unfinished
        if rows:
            prepare(torch.stack([window_at(mel[r], seek[r], frames[r]) for r in rows]))
            decoded = decode([prompts[r] for r in rows])
    return passes


def window_at(mel: Tensor, seek: int, frames: int) -> Tensor:
    """The 3000 log-mel frames a pass hears from `seek`, of an input's `frames`: zero-padded past its end."""
    heard = mel[:, seek : min(seek + N_FRAMES, frames)]
    return F.pad(heard, (0, N_FRAMES - heard.shape[-1]))
