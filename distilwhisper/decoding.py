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


@dataclass(frozen=True)
class DecodingResult:
    tokens: list[list[int]]  # per sequence, the tokens generated before the end token
    avg_logprobs: list[float]  # mean log-probability of those tokens and the end token
    no_speech_probs: list[float]  # probability of <|nospeech|> right after <|startoftranscript|>
    truncated: list[bool]  # max_new_tokens, not the end token, stopped the sequence
    acceptance_rates: list[float | None] | None = None  # speculative decoding: accepted / proposed draft tokens


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
) -> DecodingResult:
    """Decode every sequence of the batch until it emits `eot` or `max_new_tokens` are generated.

    `prompt` is one prompt for the whole batch, or one per sequence, all of one length (each with the
    language detected for it). It must start with <|startoftranscript|>: the logits there give the
    no-speech probability. `caches_ready`: the decoder's caches already hold `audio_features`
    (detect_language just filled them). `decoder_step(tokens, input_pos)` runs the decoder for the
    one-token steps after the prompt: `model.decoder` by default, or its compiled twin
    (`compiled.compiled_steps`).
    """
    decoder_step = model.decoder if decoder_step is None else decoder_step
    batch, device = audio_features.shape[0], audio_features.device
    if not caches_ready:
        model.decoder.setup_caches(audio_features)
    tokens = torch.tensor(prompt, device=device).expand(batch, -1)
    prompt_length = tokens.shape[1]
    prompt_logits = model.decoder(tokens, torch.arange(prompt_length, device=device))
    no_speech_probs = prompt_logits[:, 0].float().softmax(dim=-1)[:, no_speech] if no_speech is not None else None
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
    no_speech_probs = no_speech_probs.tolist() if no_speech_probs is not None else [float("nan")] * batch
    return DecodingResult(tokens, avg_logprobs, no_speech_probs, [eot not in row for row in rows])
