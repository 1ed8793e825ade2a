"""Audio longer than 30 s: Distil-Whisper's chunked algorithm, as the transformers ASR pipeline runs it.

    pipeline("automatic-speech-recognition", model=..., chunk_length_s=15, batch_size=4)

1. Cut the audio into overlapping chunks (`chunk_audio`): 15 s each by default, consecutive chunks sharing
   a stride of a sixth of that (2.5 s) on each side, so every word lies wholly inside some chunk.
2. Decode each chunk as an ordinary short input: zero-padded to the encoder's 30 s window, log-mel of the
   padded window, greedy decoding; `batch_size` chunks at a time (`transcribe_long`).
3. Stitch the chunks' tokens where their overlaps agree (`stitch`).

Without timestamps the strides only shape the chunks: stitching looks at tokens alone. (With timestamps,
to come, they also shift each chunk's times.) A file is read as the chunks need it (`stream_chunks`): memory
holds a chunk or two of samples and one batch of windows, whatever the length of the file.
"""

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .audio import CHUNK_LENGTH, SAMPLE_RATE, AudioStream, pad_or_trim
from .errors import DistilWhisperError

DEFAULT_CHUNK_LENGTH = 15.0  # seconds: Distil-Whisper's recommendation for its chunked algorithm


@dataclass(frozen=True)
class Chunk:
    """Samples [start, stop) of the audio; the first `left` and the last `right` are shared with the neighbours."""

    start: int
    stop: int
    left: int  # 0 for the first chunk
    right: int  # 0 for the last chunk


def chunk_samples(chunk_length: float, stride_length: float | None = None) -> tuple[int, int]:
    """(chunk, stride) in samples, rounded as the pipeline rounds them; a stride of chunk_length / 6 by default."""
    if stride_length is None:
        stride_length = chunk_length / 6
    chunk, stride = int(round(chunk_length * SAMPLE_RATE)), int(round(stride_length * SAMPLE_RATE))
    if not 0 < chunk <= CHUNK_LENGTH * SAMPLE_RATE:
        raise DistilWhisperError(f"chunk_length must be more than 0 and at most {CHUNK_LENGTH} s (the encoder's window), got {chunk_length}")
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
        arrived = []
        while not ended and offset + len(held) + sum(map(len, arrived)) <= start + chunk:
            block = next(blocks, None)
            ended = block is None
            arrived += [] if ended else [block]
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
    pieces = [s for s in sequences if s]
    if not pieces:
        return []
    merged, tail = [], pieces[0]
    for following in pieces[1:]:
        keep, resume = overlap_cut(tail, following)
        merged += tail[:keep]
        tail = following[resume:]
    return merged + tail


def overlap_cut(left: list[int], right: list[int]) -> tuple[int, int]:
    """For `stitch`: keep left[:keep], then continue with right[resume:]."""
    best_score, cut = 0.0, (len(left), 0)  # no overlap found: join them whole
    for tucked in range(1, len(left) + len(right)):
        # right[0] lies under left[len(left) - tucked]; the overlap is where both have tokens
        left_start, left_stop = max(0, len(left) - tucked), min(len(left), len(left) + len(right) - tucked)
        right_start, right_stop = max(0, tucked - len(left)), min(len(right), tucked)
        agree = sum(a == b for a, b in zip(left[left_start:left_stop], right[right_start:right_stop]))
        score = agree / tucked + tucked / 10000.0
        if agree > 1 and score > best_score:
            best_score = score
            cut = ((left_start + left_stop) // 2, (right_start + right_stop) // 2)
    return cut


def transcribe_long(
    transcriber,
    samples: torch.Tensor | AudioStream,
    prompt: list[int],
    max_new_tokens: int,
    no_speech_threshold: float | None,
    language: str | None,
    batch_size: int,
    chunk_length: float = DEFAULT_CHUNK_LENGTH,
    progress: Callable[[int, int | None, float], None] | None = None,
):
    """One Transcription of 16 kHz audio of any length, chunked, decoded and stitched: 1-D `samples` in memory,
    or an AudioStream, whose blocks are read only as the chunks need them.

    Each chunk is decoded like a short input (`Transcriber.decode_batch`), silence rule included: a chunk
    whose no-speech probability is above `no_speech_threshold` adds nothing. `language` None detects each
    chunk's language, as the pipeline does (each of its generate() calls detects every chunk of its batch);
    the result reports the language most chunks were decoded in. The result's `truncated` is
    set when any chunk hit `max_new_tokens`; `avg_logprob` is the mean of the chunks' and `no_speech_prob`
    the lowest of them (the file is silent only if every chunk is).

    `progress(chunks_done, chunks_total, audio_seconds_done)` is called before the first batch and after
    each: the total comes from the stream's `duration` (None when it has none), and is exact for samples.
    """
    from .transcribe import Transcription  # transcribe imports this module

    if isinstance(samples, torch.Tensor):
        blocks, n_samples = [samples.cpu().numpy()], len(samples)
    else:
        blocks, n_samples = samples, samples.duration and round(samples.duration * SAMPLE_RATE)
    total = len(chunk_audio(n_samples, chunk_length)) if n_samples else None
    if progress:
        progress(0, total, 0.0)
    # each chunk padded as it is cut: its samples are views that would keep the stream's buffers alive
    windows = ((chunk, pad_or_trim(torch.from_numpy(piece))) for chunk, piece in stream_chunks(blocks, chunk_length))
    decoded = []
    while batch := list(itertools.islice(windows, batch_size)):
        decoded += transcriber.decode_batch(torch.stack([w for _, w in batch]), prompt, max_new_tokens, no_speech_threshold, language)
        if progress:
            progress(len(decoded), total, batch[-1][0].stop / SAMPLE_RATE)
    tokens = stitch([d.tokens for d in decoded])
    return Transcription(
        text=transcriber.tokenizer.decode(tokens),
        tokens=tokens,
        language=Counter(d.language for d in decoded).most_common(1)[0][0],  # ties: the earliest chunk's
        avg_logprob=sum(d.avg_logprob for d in decoded) / len(decoded),
        no_speech_prob=min(d.no_speech_prob for d in decoded),
        truncated=any(d.truncated for d in decoded),
        acceptance_rate=mean([d.acceptance_rate for d in decoded if d.acceptance_rate is not None]),
    )


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
