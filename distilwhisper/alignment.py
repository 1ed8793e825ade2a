"""When each token was spoken: the alignment heads' cross-attention, as transformers' `_extract_token_timestamps`
reads it (`generate(return_token_timestamps=True)`, which the ASR pipeline's `return_timestamps="word"` asks for).

Some cross-attention heads of a trained Whisper decoder look at the audio frames being transcribed; the checkpoint
names them (generation_config.json's `alignment_heads`). For one decoding pass of a batch:

1. one teacher-forced decoder pass over what the decoding loop fed (the prompt, the generated tokens and, for rows
   that ended before the longest row, its end token repeated), keeping those heads' attention probabilities: the
   loop itself computes no weights (`alignment_weights`);
2. per row: the frames of real audio only, the prompt's rows dropped; each (head, frame) normalised over the
   tokens; a median filter along the frames; the mean over the heads (`token_times`);
3. the cheapest monotonic path from the first token and frame to the last (`dtw`): a token's time is the frame
   where the path reaches its row (0.02 s per frame).

The end-token rows of finished rows are part of the batch's matrix, as in transformers: they pull a row's last
tokens earlier, so the times depend on which rows were decoded together, and we batch as the pipeline does.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .audio import TIME_PRECISION
from .model import Decoder


@dataclass(frozen=True)
class Alignment:
    """The checkpoint's alignment heads, (decoder layer, head) 0-based, and config.json's `median_filter_width`."""

    heads: tuple[tuple[int, int], ...]
    median_width: int = 7


@torch.inference_mode()
def alignment_weights(decoder: Decoder, tokens: Tensor, heads: tuple[tuple[int, int], ...]) -> Tensor:
    """(batch, len(heads), time, audio positions) cross-attention probabilities of `heads` for a teacher-forced pass
    over `tokens` (batch, time), one row per row of the decoder's caches (which hold the batch's audio features).

    The pass writes the self-attention caches at positions 0.. (a decoding pass that ended has no more use for
    them) and stops after the last layer that holds an alignment head."""
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    x = decoder.embed_tokens(tokens) + decoder.embed_positions(positions)
    assert decoder.causal_mask is not None, "setup_caches comes first"
    mask = decoder.causal_mask[positions][:, : tokens.shape[1]]
    found: dict[tuple[int, int], Tensor] = {}
    last = max(layer for layer, _ in heads)
    for index, layer in enumerate(decoder.layers[: last + 1]):
        x = layer.read_text(x, positions, mask)
        mine = sorted({head for at, head in heads if at == index})
        if mine:
            weights = layer.cross_attention_weights(x, mine)
            found |= {(index, head): weights[:, k] for k, head in enumerate(mine)}
        if index < last:
            x = layer.listen(x)
    return torch.stack([found[head] for head in heads], dim=1)


def median_filter(x: Tensor, width: int) -> Tensor:
    """The median of each `width` neighbours along the last axis, the edges mirrored without repeating the edge
    value ("reflect"), as transformers' `_median_filter`; left alone when the axis is too short to mirror."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    x = torch.nn.functional.pad(x, (pad, pad, 0, 0), mode="reflect")
    return x.unfold(-1, width, 1).sort()[0][..., pad]


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest path through the (tokens, frames) `cost` from its first cell to its last, each step one token on,
    one frame on, or both: (token index, frame index) of each cell on it.

    transformers' `_dynamic_time_warping` fills the table cell by cell; every cell needs only its left, upper and
    upper-left neighbours, so each anti-diagonal is filled at once here, with the same arithmetic: costs summed in
    float32 (the float64 cell added, then rounded), a step taken only when strictly cheaper than both others, so that
    ties go to the frame step as there."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf, dtype=np.float32)
    trace = np.full((n + 1, m + 1), -1, dtype=np.int8)
    total[0, 0] = 0
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        diagonal, up, left = total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]
        step = np.where((diagonal < up) & (diagonal < left), 0, np.where((up < diagonal) & (up < left), 1, 2))
        best = np.choose(step, [diagonal, up, left])
        total[i, j] = (cost[i - 1, j - 1] + best.astype(np.float64)).astype(np.float32)
        trace[i, j] = step
    trace[0, :], trace[:, 0] = 2, 1
    i, j, path = n, m, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = trace[i, j]
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    tokens, frames = np.array(path[::-1]).T
    return tokens, frames


def token_times(weights: Tensor, n_prompt: int, median_width: int) -> np.ndarray:
    """One row's (heads, fed tokens, audio positions of real audio) weights -> the float32 time, in seconds from the
    start of its pass, of each token it generated: where the path reaches the row that token was fed as (the last
    token, never fed, copies the one before)."""
    w = weights[:, n_prompt:].float()
    if w.shape[1] == 0:  # nothing was fed after the prompt: transformers gives zeros
        return np.zeros(1, dtype=np.float32)
    w = (w - w.mean(dim=-2, keepdim=True)) / w.std(dim=-2, keepdim=True, unbiased=False)
    matrix = median_filter(w, median_width).mean(dim=0)
    tokens, at = dtw(-matrix.cpu().double().numpy())
    jumps = np.diff(tokens, prepend=-1).astype(bool)  # the first cell of each token's row
    times = at[jumps] * TIME_PRECISION
    return np.append(times, times[-1]).astype(np.float32)


def pass_times(decoder: Decoder, alignment: Alignment, fed: list[list[int]], frames: list[int], n_prompt: int,
               pad: int) -> list[np.ndarray]:  # fmt: skip
    """The token times (`token_times`) of a pass's rows, from `fed`: each row's prompt and generated tokens, its end
    token included when it has one; `frames`: each row's log-mel frames of real audio from the pass's start (2 per
    audio position). The rows are the first of the decoder's caches; others there (a compiled batch's padding) are
    fed end tokens and left out."""
    longest = max(map(len, fed))
    rows = decoder.layers[0].self_cache.k.shape[0] if decoder.layers[0].self_cache is not None else len(fed)
    # What the loop fed: each row padded with `pad` to the longest, the longest row's last token never fed.
    padded = [row + [pad] * (longest - len(row)) for row in fed] + [[pad] * longest] * (rows - len(fed))
    device = decoder.embed_tokens.weight.device
    weights = alignment_weights(decoder, torch.tensor(padded, device=device)[:, :-1], alignment.heads)[: len(fed)]
    # transformers slices with the count as it is, a negative one (a pass that starts past the audio's end) too; and
    # when every row has the same count, it slices the whole batch first and then each row again: twice.
    if len(set(frames)) == 1:
        weights = weights[..., : frames[0] // 2]
    return [token_times(w[..., : f // 2], n_prompt, alignment.median_width) for w, f in zip(weights, frames)]
