"""Beam search over the decoder's static cache, as transformers' generate(num_beams=N) runs it for Whisper.

Each audio keeps N hypotheses (rows b*N .. b*N + N - 1 of the decoder's self-attention caches; the cross-attention
caches stay one per audio, read by all its hypotheses). A step, for every audio at once:

1. the log-softmax of each hypothesis' next-token logits, then Whisper's logit rules on it (they only mask, each
   hypothesis with its own history), plus the hypothesis' running score;
2. the 2N best (hypothesis, token) continuations of the audio, by that sum (`torch.topk` over N * vocab);
3. the best N of them that do not end become the next hypotheses; the caches' rows are gathered to follow them;
4. those of the best N that end (the end token, or the token limit) join the audio's finished pool, scored by their
   sum over their length to the power `length_penalty` (the end token counts, the prompt does not); the pool keeps
   the N best;
5. an audio is done once its pool is full and, with `early_stopping=False`, its best running score over the current
   length cannot beat the pool's worst (transformers' heuristic; True: done once the pool is full; "never": the
   bound uses the longest possible length).

The result is the pool's best per audio, its avg_logprob as greedy_decode's (each token's log-probability among
the tokens the rules allow, the end token counted). Every comparison is the one transformers makes, on tensors of
the same shapes, so ties break the same way.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from .decoding import Decoding, Step, WindowResult, no_speech_probs, row_results
from .model import Whisper

NEVER = -1.0e9  # transformers' "minus infinity" for scores: a finite number, added, not assigned


@dataclass(frozen=True)
class BeamSearch:
    """How many hypotheses each audio keeps, and how finished ones are scored and when an audio stops: transformers'
    `num_beams`, `length_penalty` and `early_stopping` (its defaults, unless the checkpoint's generation config names
    others)."""

    num_beams: int
    length_penalty: float = 1.0
    early_stopping: bool | str = False  # True, False or "never"


@torch.inference_mode()
def beam_search(model: Whisper, prompts: list[list[int]], decoding: Decoding, beams: BeamSearch,
                step: Step | None = None) -> list[WindowResult]:  # fmt: skip
    """Each audio's best hypothesis, by beam search: the decoder's caches hold the audios' features (one row per
    prompt: `model.decoder.setup_caches(features)` first); `step(tokens, input_pos, filled)` runs the one-token steps
    after the prompt (`model.decoder` by default, or its compiled twin)."""
    step = model.decoder if step is None else step
    n, penalty, eot = beams.num_beams, beams.length_penalty, decoding.eot
    batch, prompt_length, device = len(prompts), len(prompts[0]), model.decoder.embed_tokens.weight.device
    max_length = prompt_length + decoding.max_new_tokens
    model.decoder.setup_beams(n)

    prompt_tokens = torch.tensor(prompts, device=device).repeat_interleave(n, dim=0)
    logits = model.decoder(prompt_tokens, torch.arange(prompt_length, device=device), prompt_length)
    no_speech = no_speech_probs(logits[::n], decoding)
    logits = logits[:, -1]

    running = torch.full((batch, n, max_length), eot, device=device)
    running[:, :, :prompt_length] = prompt_tokens.view(batch, n, prompt_length)
    running_scores = torch.zeros(batch, n, device=device)
    running_scores[:, 1:] = NEVER  # the hypotheses start as copies of one: only the first proposes at step one
    finished, finished_scores = running.clone(), torch.full((batch, n), NEVER, device=device)
    # avg_logprob as greedy_decode's: each token's log-probability among the tokens the rules allow.
    running_logprobs, finished_logprobs = torch.zeros(batch, n, device=device), torch.zeros(batch, n, device=device)
    is_finished = torch.zeros(batch, n, dtype=torch.bool, device=device)
    may_improve = torch.ones(batch, 1, dtype=torch.bool, device=device)
    top_n = torch.arange(2 * n, device=device) < n  # of the 2N continuations, only the best N may finish
    rows = torch.arange(batch, device=device)[:, None] * n  # the first cache row of each audio

    for length in range(prompt_length, max_length):
        scores = logits.float().log_softmax(dim=-1)
        for rule in decoding.rules:
            rule.apply(scores, running.view(batch * n, -1)[:, prompt_length:length])
        vocab = scores.shape[-1]
        totals = (scores.view(batch, n, vocab) + running_scores[:, :, None]).view(batch, n * vocab)
        top_scores, top_indices = torch.topk(totals, 2 * n)
        sources, tokens = top_indices // vocab, top_indices % vocab
        candidates = gather(running, sources)
        allowed = scores.log_softmax(dim=-1).view(batch, n * vocab)
        logprobs = running_logprobs.gather(1, sources) + allowed.gather(1, top_indices)
        candidates[:, :, length] = tokens
        ends = (tokens == eot) | (length + 1 >= max_length)

        # The best N continuations that do not end carry on.
        carrying = top_scores + ends.float() * NEVER
        carry_on = torch.topk(carrying, n).indices
        running, running_scores = gather(candidates, carry_on), carrying.gather(1, carry_on)
        running_logprobs = logprobs.gather(1, carry_on)
        parents = rows + sources.gather(1, carry_on)

        # Those of the best N that end join the finished pool, which keeps its N best.
        normalised = top_scores / ((length + 1 - prompt_length) ** penalty)
        normalised = normalised + (is_finished.all(dim=1, keepdim=True) & (beams.early_stopping is True)).float() * NEVER
        normalised = normalised + (~may_improve).float() * NEVER
        just_finished = ends & top_n
        normalised = normalised + (~just_finished).float() * NEVER
        pool = torch.topk(torch.cat([finished_scores, normalised], dim=1), n).indices
        finished = gather(torch.cat([finished, candidates], dim=1), pool)
        finished_scores = torch.cat([finished_scores, normalised], dim=1).gather(1, pool)
        finished_logprobs = torch.cat([finished_logprobs, logprobs], dim=1).gather(1, pool)
        is_finished = torch.cat([is_finished, just_finished], dim=1).gather(1, pool)

        may_improve = may_improve & can_improve(running_scores, finished_scores, is_finished, beams,
                                                length + 1 - prompt_length, max_length - prompt_length)  # fmt: skip
        done = ~may_improve.any() | (is_finished.all() & (beams.early_stopping is True)) | ends.all()
        if bool(done):
            break
        model.decoder.reorder_caches(parents.view(-1), length)
        logits = step(running[:, :, length].reshape(-1, 1), torch.tensor([length], device=device), length + 1)[:, -1]

    return row_results(finished[:, 0, prompt_length:].tolist(), eot, finished_logprobs[:, 0].tolist(), no_speech)


def gather(sequences: Tensor, indices: Tensor) -> Tensor:
    """(batch, k, length) sequences picked by (batch, m) indices into k: (batch, m, length)."""
    return sequences.gather(1, indices[:, :, None].expand(-1, -1, sequences.shape[2]))


def can_improve(running_scores: Tensor, finished_scores: Tensor, is_finished: Tensor, beams: BeamSearch,
                length: int, longest: int) -> Tensor:  # fmt: skip
    """transformers' early-stop heuristic: whether an audio's best running hypothesis could still beat the worst of
    a full pool, scored at the current `length` (or, with early_stopping="never" and a positive penalty, `longest`)."""
    hypothetical = longest if beams.early_stopping == "never" and beams.length_penalty > 0.0 else length
    best_possible = running_scores[:, :1] / (hypothetical**beams.length_penalty)
    worst = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True).values, NEVER)
    return (best_possible > worst).any(dim=1, keepdim=True)
