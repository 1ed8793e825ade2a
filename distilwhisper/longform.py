"""Audio longer than 30 s: Distil-Whisper's chunked algorithm, as the transformers ASR pipeline runs it.

    pipeline("automatic-speech-recognition", model=..., chunk_length_s=15, batch_size=4)

1. Cut the audio into overlapping chunks (`chunk_audio`): 15 s each by default, consecutive chunks sharing
   a stride of a sixth of that (2.5 s) on each side, so every word lies wholly inside some chunk.
2. Decode each chunk as an ordinary short input: zero-padded to the encoder's 30 s window, log-mel of the
   padded window, greedy decoding; `batch_size` chunks at a time (`Transcriber.transcribe_long`).
3. Stitch the chunks' tokens where their overlaps agree (`stitch`).

Without timestamps the strides only shape the chunks: stitching looks at tokens alone. With timestamps
(`stitch_with_timestamps`) they also decide which chunk's timestamps cut the segments, and each chunk's
times are shifted by where it starts. A file is read as the chunks need it (`stream_chunks`): memory
holds a chunk or two of samples and one batch of windows, whatever the length of the file.

This module is plain arithmetic on sample counts and token lists: it decodes nothing itself.
"""

import numbers
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from .audio import CHUNK_LENGTH, N_FRAMES, SAMPLE_RATE, TIME_PRECISION
from .errors import DistilWhisperError

DEFAULT_CHUNK_LENGTH = 15.0  # seconds: Distil-Whisper's recommendation for its chunked algorithm
# Every chunk costs a whole 30 s window, so one shorter than a second (less than a word) would only make a decode
# endless: a 1-sample chunk would take hours for a minute of audio.
MIN_CHUNK_LENGTH = 1.0
# A text token's (start, end) in seconds from the start of the audio, with word timing.
TokenTime = tuple[float, float]


@dataclass(frozen=True)
class Chunk:
    """Samples [start, stop) of the audio; the first `left` and the last `right` are shared with the neighbours."""

    start: int
    stop: int
    left: int  # 0 for the first chunk
    right: int  # 0 for the last chunk

    @classmethod
    def whole(cls, n_samples: int) -> "Chunk":
        """An input heard whole, in one window: no neighbours, no strides."""
        return cls(0, n_samples, 0, 0)


def chunk_samples(chunk_length: float, stride_length: float | None = None) -> tuple[int, int]:
    """(chunk, stride) in samples, rounded as the pipeline rounds them; a stride of chunk_length / 6 by default."""
    if not isinstance(chunk_length, numbers.Real) or not MIN_CHUNK_LENGTH <= chunk_length <= CHUNK_LENGTH:  # NaN too
        raise DistilWhisperError(
            f"chunk_length must be between {MIN_CHUNK_LENGTH:g} and {CHUNK_LENGTH} s (the encoder's window), got {chunk_length!r}"
        )
    if stride_length is None:
        stride_length = chunk_length / 6
    chunk, stride = int(round(chunk_length * SAMPLE_RATE)), int(round(stride_length * SAMPLE_RATE))
    if not 0 <= 2 * stride < chunk:
        raise DistilWhisperError(f"the stride ({stride_length} s each side) must leave room in a {chunk_length} s chunk")
    return chunk, stride


def chunk_audio(n_samples: int, chunk_length: float = DEFAULT_CHUNK_LENGTH, stride_length: float | None = None) -> list[Chunk]:
    """Where the chunks of `n_samples` samples lie.

    Chunks start every `chunk - 2 * stride` samples. The first one to reach the end of the audio is the
    last, however little of it is new (at most one step plus the two strides); it can be shorter than the
    others, and it is padded to 30 s like all of them. With 15 s chunks and 2.5 s strides, 35 s of audio:

        [0 s, 15 s)    left 0,     right 2.5 s
        [10 s, 25 s)   left 2.5 s, right 2.5 s
        [20 s, 35 s)   left 2.5 s, right 0
    """
    chunk, stride = chunk_samples(chunk_length, stride_length)
    chunks = []
    for start in range(0, n_samples, chunk - 2 * stride):
        piece, is_last = chunk_at(start, n_samples, chunk, stride)
        if piece is not None:
            chunks.append(piece)
        if is_last:
            break
    return chunks


def chunk_count(n_samples: int, chunk_length: float = DEFAULT_CHUNK_LENGTH) -> int:
    """len(chunk_audio(n_samples, chunk_length)), reckoned rather than listed: a stream's duration is what its
    header claims, and a corrupt header can claim years."""
    chunk, stride = chunk_samples(chunk_length)
    step = chunk - 2 * stride
    last_start = max(0, -(-(n_samples - chunk) // step)) * step  # the first start whose chunk reaches the end
    return last_start // step + (chunk_at(last_start, n_samples, chunk, stride)[0] is not None)


def chunk_at(start: int, n_samples: int, chunk: int, stride: int) -> tuple[Chunk | None, bool]:
    """The chunk that starts at `start`, and whether it is the last, for audio of `n_samples` samples; or for
    audio of which more than `start + chunk` samples have been read so far, its end still unknown.

    None for a last chunk that holds nothing but its left stride: never, with the pipeline's own rounding,
    but kept so that the chunks are the pipeline's exactly.
    """
    stop = min(start + chunk, n_samples)
    is_last = start + chunk >= n_samples
    left = 0 if start == 0 else stride
    return (Chunk(start, stop, left, 0 if is_last else stride) if stop - start > left else None), is_last


def stream_chunks(
    blocks: Iterable[np.ndarray], chunk_length: float = DEFAULT_CHUNK_LENGTH, stride_length: float | None = None
) -> Iterator[tuple[Chunk, np.ndarray]]:
    """`chunk_audio`'s chunks and their samples, from samples arriving in blocks of any size: the length is
    not known until the blocks end, so each chunk is cut once one sample past its end has been read (or the
    blocks have ended), which is enough to tell whether it is the last. Holds one chunk and a block or so.
    """
    chunk, stride = chunk_samples(chunk_length, stride_length)
    blocks = iter(blocks)
    held, offset, ended = np.zeros(0, np.float32), 0, False  # held: samples offset.. of the audio
    start = 0
    while True:
        arrived: list[np.ndarray] = []
        while not ended and offset + len(held) + sum(map(len, arrived)) <= start + chunk:
            block = next(blocks, None)
            ended = block is None
            if block is not None:
                arrived.append(block)
        held = np.concatenate([held, *arrived]) if arrived else held
        if start >= offset + len(held):  # no audio at all: chunk_audio(0) is no chunks either
            return
        piece, is_last = chunk_at(start, offset + len(held), chunk, stride)
        if piece is not None:
            yield piece, held[piece.start - offset : piece.stop - offset]
        if is_last:
            return
        start += chunk - 2 * stride
        held, offset = held[start - offset :], start


def stitch(sequences: list[list[int]]) -> list[int]:
    """One token sequence from the chunks' sequences, each overlapping the next: the pipeline's merge.

    Chunks that decoded to nothing are left out (their neighbours then meet). Then, left to right, the
    text so far is `merged + tail`, where `tail` is what remains of the last chunk, and each new chunk
    is slid under the tail's end to find where they overlap best:

        tail   = [a, b, c, d, e]
        next   =          [d, e, f, g]

        tucked under by 1: [e]          vs [d]          0 of 1 agree
        tucked under by 2: [d, e]       vs [d, e]       2 of 2 agree   <- best
        tucked under by 3: [c, d, e]    vs [d, e, f]    0 of 3 agree
        ... and so on, until only next's last token lies under tail's first.

    An alignment scores (tokens that agree) / (tokens tucked under) + (tokens tucked under) / 10000:
    the fraction that agrees, longer alignments winning ties. At least two tokens must agree; without
    any such alignment the chunks are simply joined. In the overlap of the best alignment (tail's
    [d, e] over next's [d, e]) each side is trusted for its own half: the tail up to the overlap's
    middle, the next chunk from its middle on, because a chunk's tokens are least reliable near its
    cut edge. Here the middle is after d: merged gains [a, b, c, d], the new tail is [e, f, g], and
    once all chunks are in, the result is merged + tail = [a, b, c, d, e, f, g].

    When the next chunk is longer than the tail, "tucked under by i" can exceed the tail's length;
    the overlap is then the whole tail, and the score still divides by i.
    """
    # Times that are all equal never stop two tokens agreeing: `stitch_timed` then looks at tokens alone.
    return stitch_timed(sequences, [[(0.0, 0.0)] * len(s) for s in sequences])[0]


def stitch_timed(sequences: list[list[int]], times: list[list[TokenTime]]) -> tuple[list[int], list[TokenTime]]:
    """`stitch` for tokens that each have a (start, end) time (`times`, one list per sequence): two tokens agree only
    when they are equal and the left one's time is not later than the right one's (tuple order), as the pipeline
    merges with word timestamps; the times are cut where the tokens are."""
    pieces = [(s, t) for s, t in zip(sequences, times) if s]
    if not pieces:
        return [], []
    merged: list[int] = []
    merged_times: list[TokenTime] = []
    tail, tail_times = pieces[0]
    for following, following_times in pieces[1:]:
        keep, resume = overlap_cut(tail, following, tail_times, following_times)
        merged, merged_times = merged + tail[:keep], merged_times + tail_times[:keep]
        tail, tail_times = following[resume:], following_times[resume:]
    return merged + tail, merged_times + tail_times


def overlap_cut(left: list[int], right: list[int], left_times: list[TokenTime], right_times: list[TokenTime]) -> tuple[int, int]:
    """For `stitch_timed`: keep left[:keep], then continue with right[resume:]."""
    best_score, cut = 0.0, (len(left), 0)  # no overlap found: join them whole
    for tucked in range(1, len(left) + len(right)):
        # right[0] lies under left[len(left) - tucked]; the overlap is where both have tokens
        left_start, left_stop = max(0, len(left) - tucked), min(len(left), len(left) + len(right) - tucked)
        right_start, right_stop = max(0, tucked - len(left)), min(len(right), tucked)
        agree = sum(a == b and at <= bt for a, b, at, bt in zip(left[left_start:left_stop], right[right_start:right_stop],
                                                                left_times[left_start:left_stop], right_times[right_start:right_stop]))  # fmt: skip
        score = agree / tucked + tucked / 10000.0
        if agree > 1 and score > best_score:
            best_score = score
            cut = ((left_start + left_stop) // 2, (right_start + right_stop) // 2)
    return cut


@dataclass(frozen=True)
class Span:
    """Text tokens between two timestamps, times in seconds from the start of the audio."""

    start: float
    end: float
    tokens: list[int]
    times: list[TokenTime] = field(default_factory=list)  # with word timing: each token's (start, end)


def stitch_with_timestamps(
    pieces: list[tuple[list[int], Chunk]], timestamp_begin: int, eot: int, audio_end: float,
    token_times: list[list[float]] | None = None,
) -> list[Span]:  # fmt: skip
    """Segments with absolute times from the chunks' tokens (timestamps among them): the pipeline's merge
    (transformers' Whisper tokenizer, `_decode_asr` with return_timestamps=True).

    A segment opens at a timestamp and closes at the next one with a different time. A segment that
    runs across a seam gathers one token list per chunk, merged by `stitch` when it closes. A chunk's
    timestamp k means `k * 0.02` s after the start of the decoding pass that produced it
    (`greedy_decode_with_timestamps`): the chunk's start for the first pass. A timestamp earlier than
    the one before it starts a later pass, which began at the first timestamp of the pair that ended the
    pass before (30 s on if that pass ended on a single timestamp). Timestamps near a cut are not
    trusted to open or close anything, because the neighbouring chunk hears that audio with context:

    - right stride: from the first of the chunk's final timestamps that all lie in its right stride (the
      very last timestamp at least) on, a timestamp is skipped, and so is the one after it, its partner,
      even when that comes in the next chunk;
    - left stride: a timestamp there is skipped while the open segment holds text from earlier chunks.

    Example: 25 s of audio in 15 s chunks, 2.5 s strides, `<|t|>` a timestamp, A..G text:

        chunk 1, [0 s, 15 s), right stride from 12.5 s:
            <|0.00|> A B <|6.00|><|6.00|> C D <|13.00|><|13.00|> E <|14.80|>
        chunk 2, [10 s, 25 s), left stride until 2.5 s:
            <|0.00|> D E F <|5.00|><|5.00|> G <|14.00|>

    In chunk 1, <|0.00|> opens at 0.0 s, <|6.00|> closes [0.0, 6.0] "A B" and opens again at 6.0 s.
    The final timestamps 14.80 and 13.00 lie in the right stride (6.00 does not), so every timestamp
    from <|13.00|> on is skipped, and C D E is left pending. In chunk 2 (times + 10 s) <|0.00|> is
    skipped as the partner of <|14.80|>; <|5.00|> (15.0 s) closes [6.0, 15.0] with stitch([C D E],
    [D E F]) = C D E F, and opens again; <|14.00|> closes [15.0, 24.0] "G".

    A chunk that ends with no text pending forgets a segment it opened. Text left without a closing
    timestamp at the very end becomes a last segment that ends at `audio_end` (where the pipeline
    leaves its end None), or at its start if that is later; without an opening timestamp, it starts
    where the segment before it ended (0.0 if none; the pipeline leaves that None too).

    Times are added up and rounded exactly as the pipeline does, so they are equal to the last bit.
    Tokens between `eot` and `timestamp_begin` (other special tokens) are ignored.

    With word timing (`token_times`: one time per token of each piece, seconds from the chunk's start), a text token
    runs from the time of the token before it (timestamps count; the chunk's start for its first) to its own, and
    a segment's text is merged by `stitch_timed`, as the pipeline does with return_timestamps="word".
    """
    spans: list[Span] = []
    start: float | None = None  # where the open segment started, once known
    pending: list[list[int]] = []  # the open segment's text from earlier chunks, one list per chunk
    pending_times: list[list[TokenTime]] = []  # and with word timing, their tokens' times
    skip_partner = False
    offset = 0.0  # seconds from the audio's start to the current chunk's, summed as the pipeline sums it
    for piece, (tokens, chunk) in enumerate(pieces):
        length, left, right = (chunk.stop - chunk.start) / SAMPLE_RATE, chunk.left / SAMPLE_RATE, chunk.right / SAMPLE_RATE
        offset -= left
        left_stride_end = timestamp_begin + left / TIME_PRECISION  # timestamp tokens below it lie in the left stride
        skip_from = right_stride_skip(tokens, timestamp_begin, length - right) if right else None
        text: list[int] = []
        text_times: list[TokenTime] = []
        latest = before_latest = 0.0  # this pass's last two timestamps, in seconds from its start
        passes = 0.0  # where this pass starts, in seconds from the chunk's start
        for i, token in enumerate(tokens):
            if token < eot:
                text.append(token)
                if token_times is None:  # times all equal: they never stop two tokens agreeing in `stitch_timed`
                    text_times.append((0.0, 0.0))
                else:
                    times = token_times[piece]
                    text_times.append((round((times[i - 1] if i else 0.0) + offset, 2), round(times[i] + offset, 2)))
            elif token >= timestamp_begin:
                seconds = (token - timestamp_begin) * TIME_PRECISION
                if seconds < latest:  # a new pass
                    if i >= 2 and not (tokens[i - 1] >= timestamp_begin and tokens[i - 2] >= timestamp_begin):
                        passes += N_FRAMES // 2 * TIME_PRECISION  # after a single timestamp: a whole window on
                    else:  # after a pair: it started at the pair's first timestamp
                        latest = before_latest
                        passes += before_latest
                before_latest, latest = latest, seconds
                time = round(seconds + offset + passes, 2)
                if skip_from is not None and token >= skip_from:
                    skip_partner = True
                elif skip_partner or (pending and token < left_stride_end):
                    skip_partner = False
                elif start is None:
                    start = time
                elif time != start:  # a repeated opening timestamp does not close an empty segment
                    spans.append(Span(start, time, *stitch_timed(pending + [text], pending_times + [text_times])))
                    start, pending, pending_times, text, text_times = None, [], [], [], []
        offset += length - right
        if text:
            pending.append(text)
            pending_times.append(text_times)
        elif not pending:
            start = None
    if pending:
        if start is None:  # its opening timestamp was skipped
            start = spans[-1].end if spans else 0.0
        spans.append(Span(start, max(start, audio_end), *stitch_timed(pending, pending_times)))
    return spans if token_times is not None else [replace(span, times=[]) for span in spans]  # the zeros were a stand-in


def right_stride_skip(tokens: list[int], timestamp_begin: int, right_stride_start: float) -> int | None:
    """For `stitch_with_timestamps`: the timestamp token from which a chunk's timestamps are skipped."""
    timestamps = [t for t in tokens if t >= timestamp_begin]
    if not timestamps:
        return None
    skip_from = timestamps[-1]
    for token in reversed(timestamps[:-1]):
        if (token - timestamp_begin) * TIME_PRECISION < right_stride_start:
            break
        skip_from = token
    return skip_from
