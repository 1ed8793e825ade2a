"""Audio longer than 30 s, the other way: one 30 s window after another, as openai/whisper, faster-whisper and
transformers' generate() (given the whole log-mel) decode it.

    window at 0 s:     <|0.00|> A <|4.00|><|4.00|> B <|9.50|><|9.50|> C      (C cut off by the window's end)
    window at 9.5 s:   <|0.00|> C D <|6.00|> ...

Each pass decodes the 30 s of log-mel from `seek` on (zero-padded past the audio's end) with timestamps. It keeps its
tokens up to its last pair of timestamps and the next pass starts where that pair points; a pass that ends on a
single timestamp, or has no pair, heard its whole window, and the next one starts after it (`decoding.
finished_segments`; the loop is `decoding.passes_over`, over the whole input's log-mel). Each pass's segments
are its tokens between timestamps, with times offset by where it started (`pass_spans`).

Against the chunked algorithm (longform.py): a window of 30 s of audio, where a 15 s chunk fills half of one, so
about half the encoder runs for the same audio; but one pass waits for the one before, so a file's windows cannot be
batched (several files' can), and the whole input's log-mel is needed first (its loudest frame sets the floor).

This module is plain arithmetic on token lists: it decodes nothing itself.
"""

from dataclasses import dataclass

from .audio import HOP_LENGTH, SAMPLE_RATE, TIME_PRECISION
from .longform import Span

FRAME_SECONDS = HOP_LENGTH / SAMPLE_RATE  # one log-mel frame; two make a timestamp step


@dataclass(frozen=True)
class Pass:
    """What one pass kept of its tokens (the timestamps among them), where it started and how much it heard, in
    log-mel frames from the input's start; `silent`: skipped by the silence rule, kept nothing."""

    tokens: list[int]
    seek: int
    frames: int
    silent: bool = False


def pass_spans(done: Pass, timestamp_begin: int, eot: int) -> list[Span]:
    """One pass's segments, as transformers' generate() cuts them (`_retrieve_segment`): at each pair of
    timestamps; without a pair, the pass is one segment, from its start to its last timestamp (to the end of
    what it heard if it has none but <|0.00|>). Times are summed in float64 in generate()'s order, so they
    are equal to the last bit; a span's tokens are its text tokens. A silent pass has none."""
    if done.silent:
        return []
    tokens, begin = done.tokens, timestamp_begin
    offset = done.seek * TIME_PRECISION / 2  # 2 frames per timestamp step
    is_timestamp = [t >= begin for t in tokens]
    single_ending = is_timestamp[-2:] == [False, True]
    cuts = [i for i in range(1, len(tokens)) if is_timestamp[i - 1] and is_timestamp[i]]
    if not cuts:
        stamps = [t for t in tokens if t >= begin]
        last = stamps[-1] - begin if stamps and stamps[-1] != begin else int(done.frames * FRAME_SECONDS / TIME_PRECISION)
        return [Span(offset, offset + last * TIME_PRECISION, [t for t in tokens if t < eot])]
    cuts = cuts + [len(tokens)] if single_ending else cuts[:-1] + [cuts[-1] + 1]  # the last pair closes the last span
    spans, start = [], 0
    for i, stop in enumerate(cuts):
        piece = tokens[start:stop]
        end = piece[-1] if i < len(cuts) - 1 or single_ending else piece[-2]  # a pair: the first of it ends the span
        spans.append(Span(offset + (piece[0] - begin) * TIME_PRECISION, offset + (end - begin) * TIME_PRECISION,
                          [t for t in piece if t < eot]))  # fmt: skip
        start = stop
    return spans
