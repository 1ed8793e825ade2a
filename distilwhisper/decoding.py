"""Greedy decoding with Whisper's logit rules, batched, over the decoder's static cache.

Each rule is a tiny class with one method, `apply(logits, generated)`: it edits the (batch, vocab) logits
in place, knowing the (batch, step) tokens generated so far (the prompt excluded), so rules can be tested
one by one and composed in a list. The loop itself reads like the algorithm: prefill the prompt, then one token at a time.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .model import Whisper


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
class DecodingResult:
    tokens: list[list[int]]  # per sequence, the tokens generated before the end token
    avg_logprobs: list[float]  # mean log-probability of those tokens and the end token
    no_speech_probs: list[float]  # probability of <|nospeech|> right after <|startoftranscript|>
    truncated: list[bool]  # max_new_tokens, not the end token, stopped the sequence
    proposed: list[int] | None = None  # speculative decoding: draft tokens proposed, per sequence
    accepted: list[int] | None = None  # and of those, the ones the main model agreed with

    @property
    def acceptance_rates(self) -> list[float | None] | None:
        """Speculative decoding: accepted / proposed draft tokens (None for a sequence that was proposed none)."""
        if self.proposed is None or self.accepted is None:
            return None
        return [a / p if p else None for a, p in zip(self.accepted, self.proposed)]


@torch.inference_mode()
def detect_language(model: Whisper, audio_features: Tensor, sot: int, language_tokens: list[int]) -> Tensor:
    """Each sequence's likeliest language token, as transformers' generate() detects it when no language is
    given: the logits after <|startoftranscript|> alone, every token but `language_tokens` masked (no
    other logit rule), argmax.

    One decoder step. It leaves the decoder's caches holding `audio_features`, so that greedy_decode(...,
    caches_ready=True) can follow without computing the cross-attention keys and values again.
    """
    batch, device = audio_features.shape[0], audio_features.device
    model.decoder.setup_caches(audio_features)
    logits = model.decoder(torch.full((batch, 1), sot, device=device), torch.zeros(1, dtype=torch.long, device=device))
    candidates = torch.tensor(sorted(language_tokens), device=device)  # ascending: ties go to the lowest id, as in argmax
    return candidates[logits[:, -1, candidates].argmax(dim=-1)]


@torch.inference_mode()
def greedy_decode(
    model: Whisper,
    audio_features: Tensor,
    prompt: list[int] | list[list[int]],
    eot: int,
    rules: list,
    max_new_tokens: int,
    no_speech: int | None = None,
    caches_ready: bool = False,
    decoder_step: Callable[[Tensor, Tensor], Tensor] | None = None,
    sot_index: int = 0,
) -> DecodingResult:
    """Decode every sequence of the batch until it emits `eot` or `max_new_tokens` are generated.

    `prompt` is one prompt for the whole batch, or one per sequence, all of one length (each with the
    language detected for it). <|startoftranscript|> stands at `sot_index` (after the previous text of
    an initial prompt, if any): the logits there give the no-speech probability. `caches_ready`: the
    decoder's caches already hold `audio_features` (detect_language just filled them). `decoder_step(tokens, input_pos)` runs the decoder for the
    one-token steps after the prompt: `model.decoder` by default, or its compiled twin
    (`compiled.compiled_steps`).
    """
    decoder_step = model.decoder if decoder_step is None else decoder_step
    batch, device = audio_features.shape[0], audio_features.device
    if not caches_ready:
        model.decoder.setup_caches(audio_features)
    prompt_tokens = torch.tensor(prompt, device=device).expand(batch, -1)
    prompt_length = prompt_tokens.shape[1]
    prompt_logits = model.decoder(prompt_tokens, torch.arange(prompt_length, device=device))
    no_speech_probs = prompt_logits[:, sot_index].float().softmax(dim=-1)[:, no_speech] if no_speech is not None else None
    logits = prompt_logits[:, -1]

    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    sum_logprobs = torch.zeros(batch, device=device)
    generated = torch.full((batch, max_new_tokens), eot, device=device)
    positions = torch.arange(prompt_length, prompt_length + max_new_tokens, device=device)  # sliced, never built per step
    check_every = END_CHECK_EVERY.get(device.type, 8)
    for step in range(max_new_tokens):
        logits = logits.float()
        for rule in rules:
            rule.apply(logits, generated[:, :step])
        next_tokens = torch.where(finished, eot, logits.argmax(dim=-1))
        logprobs = logits.log_softmax(dim=-1).gather(1, next_tokens[:, None])[:, 0]
        sum_logprobs += torch.where(finished, 0.0, logprobs)
        generated[:, step] = next_tokens
        finished |= next_tokens == eot
        if step == max_new_tokens - 1 or (step % check_every == check_every - 1 and finished.all()):
            break
        logits = decoder_step(next_tokens[:, None], positions[step : step + 1])[:, -1]

    rows = generated[:, : step + 1].tolist()
    tokens = [row[: row.index(eot)] if eot in row else row for row in rows]
    # Like openai/whisper, the end token counts in the average.
    avg_logprobs = [total / (len(row) + 1) for total, row in zip(sum_logprobs.tolist(), tokens)]
    no_speech_list = no_speech_probs.tolist() if no_speech_probs is not None else [float("nan")] * batch
    return DecodingResult(tokens, avg_logprobs, no_speech_list, [eot not in row for row in rows])


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


# One decoding pass over a batch of windows: (mel, audio_features, prompts, caches_ready) -> DecodingResult,
# `greedy_decode` or `speculative_decode` with everything else bound; `caches_ready` as in `greedy_decode`.
DecodePass = Callable[[Tensor, Tensor, list[list[int]], bool], DecodingResult]


@torch.inference_mode()
def decode_in_passes(
    decode_pass: DecodePass,
    encoder: Callable[[Tensor], Tensor],
    mel: Tensor,
    audio_features: Tensor,
    prompts: list[list[int]],
    timestamp_begin: int,
    caches_ready: bool = False,
) -> DecodingResult:
    """Decoding of (batch, n_mels, 3000) log-mel windows with timestamp tokens (the pass's rules hold
    TimestampRules), in passes as transformers' generate(return_timestamps=True) runs them;
    `audio_features` are `encoder(mel)`, `prompts` one prompt per window.

    When a pass stops mid-speech (`finished_segments`), the window's rest is decoded again, from the
    start of its last segment: the log-mel frames from there on, zero-padded to 3000 frames; the
    second pass's timestamps count from there. The window's tokens are its passes' kept tokens, one
    after the other. A pass whose last segment starts at 0.00 s would start the same pass again
    forever; there, the window ends. `no_speech_probs` and `avg_logprobs` are the first pass's;
    `truncated` is set when any pass hit the token limit; the acceptance rate counts every pass.
    """
    frames, batch = mel.shape[-1], mel.shape[0]
    first = decode_pass(mel, audio_features, prompts, caches_ready)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    truncated, seek = [False] * batch, [0] * batch
    proposed, accepted = [0] * batch, [0] * batch  # draft tokens, over every pass
    rows, decoded = list(range(batch)), first
    while rows:
        unfinished = []
        for i, (row, generated, cut) in enumerate(zip(rows, decoded.tokens, decoded.truncated)):
            kept, resume = finished_segments(generated, timestamp_begin)
            tokens[row] += kept
            truncated[row] |= cut
            if decoded.proposed is not None and decoded.accepted is not None:
                proposed[row] += decoded.proposed[i]
                accepted[row] += decoded.accepted[i]
            seek[row] += 2 * (resume or 0)  # 2 log-mel frames per timestamp step
            if resume and seek[row] < frames:
                unfinished.append(row)
        rows = unfinished
        if rows:
            rest = torch.stack([torch.nn.functional.pad(mel[r, :, seek[r] :], (0, seek[r])) for r in rows])
            decoded = decode_pass(rest, encoder(rest), [prompts[r] for r in rows], False)
    if first.proposed is None:  # greedy passes
        return DecodingResult(tokens, first.avg_logprobs, first.no_speech_probs, truncated)
    return DecodingResult(tokens, first.avg_logprobs, first.no_speech_probs, truncated, proposed, accepted)


def greedy_decode_with_timestamps(
    model: Whisper,
    mel: Tensor,
    audio_features: Tensor,
    prompts: list[list[int]],
    eot: int,
    rules: list,
    max_new_tokens: int,
    no_speech: int | None,
    timestamp_begin: int,
    caches_ready: bool = False,
    sot_index: int = 0,
) -> DecodingResult:
    """`decode_in_passes` with greedy passes: `rules` hold TimestampRules, the rest as in `greedy_decode`."""

    def greedy_pass(mel: Tensor, features: Tensor, prompts: list[list[int]], caches_ready: bool) -> DecodingResult:
        return greedy_decode(model, features, prompts, eot, rules, max_new_tokens, no_speech, caches_ready, sot_index=sot_index)

    return decode_in_passes(greedy_pass, model.encoder, mel, audio_features, prompts, timestamp_begin, caches_ready)
