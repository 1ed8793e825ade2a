"""SubRip and WebVTT: one cue per segment, or, with word timestamps, cues cut at words as openai/whisper's CLI cuts
them (`--max-line-width`, `--max-line-count`, `--highlight-words`: its `SubtitlesWriter.iterate_result`).

With words, a cue runs from its first word's start to its last word's end. Without a width and a count both, every
segment starts a new cue (a width alone wraps the segment's lines, a count alone does nothing); with both, cues
flow across segments and break after `max_line_count` lines or at a pause of more than 3 s. Highlighting gives one
cue per word, the word underlined (<u>), and the plain cue over the gaps between words.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

from .transcribe import Segment
from .words import Word

LONG_PAUSE = 3.0  # seconds without a word that end a cue, when cues flow across segments


@dataclass(frozen=True)
class CueLayout:
    """How cues are cut at words; None: no limit."""

    max_line_width: int | None = None  # characters per line
    max_line_count: int | None = None  # lines per cue (only with max_line_width)
    highlight_words: bool = False


def subtitles(segments: list[Segment], output_format: str, words: list[Word] | None = None, layout: CueLayout = CueLayout()) -> str:
    """SubRip (numbered cues, 00:00:01,500) or WebVTT (a header, 00:00:01.500). Without `words`, one cue per segment
    that has text; with them, cues cut at words (`layout`)."""
    marker = "," if output_format == "srt" else "."
    if words:
        timed = word_cues(segment_words(segments, words), layout)
    else:
        timed = ((s.start, s.end, s.text.strip()) for s in segments if s.text.strip())
    cues = [f"{clock(start, marker)} --> {clock(end, marker)}\n{text}" for start, end, text in timed]
    if output_format == "srt":
        return "\n\n".join(f"{n}\n{cue}" for n, cue in enumerate(cues, 1))
    return "\n\n".join(["WEBVTT", *cues])


def clock(seconds: float, marker: str = ".") -> str:
    """hh:mm:ss.mmm (the millisecond marker is "," in SubRip)."""
    milliseconds = round(seconds * 1000)
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{marker}{rest % 1000:03d}"


def segment_words(segments: list[Segment], words: list[Word]) -> list[list[Word]]:
    """Each segment's words. A transcription's words are its segments' words, in order, and their text joins to
    the segments' text, so each segment takes words until their text covers its own."""
    grouped, rest = [], iter(words)
    for segment in segments:
        mine: list[Word] = []
        while sum(len(w.text) for w in mine) < len(segment.text) and (word := next(rest, None)) is not None:
            mine.append(word)
        grouped.append(mine)
    grouped[-1:] = [grouped[-1] + list(rest)] if grouped else []
    return grouped


def word_cues(segments: list[list[Word]], layout: CueLayout) -> Iterator[tuple[float, float, str]]:
    """(start, end, text) of each cue; highlighted, one per word and one per gap between words."""
    for cue in cut_cues(segments, layout):
        text = "".join(piece for piece, _ in cue)
        if not layout.highlight_words:
            yield cue[0][1].start, cue[-1][1].end, text
            continue
        last = cue[0][1].start
        for i, (_, word) in enumerate(cue):
            if round(last, 3) != round(word.start, 3):  # as the clocks print them
                yield last, word.start, text
            underlined = (re.sub(r"^(\s*)(.*)$", r"\1<u>\2</u>", piece, flags=re.S) if j == i else piece for j, (piece, _) in enumerate(cue))
            yield word.start, word.end, "".join(underlined)
            last = word.end


def cut_cues(segments: list[list[Word]], layout: CueLayout) -> Iterator[list[tuple[str, Word]]]:
    """The cues, each a list of (the word as printed: its space, or a line break before it; the word)."""
    flowing = layout.max_line_width is not None and layout.max_line_count is not None
    width = layout.max_line_width or 1000
    cue: list[tuple[str, Word]] = []
    line_width, lines = 0, 1
    last = next((s[0].start for s in segments if s), 0.0)
    for words in segments:
        for i, word in enumerate(words):
            piece = word.text
            long_pause = flowing and word.start - last > LONG_PAUSE
            segment_break = i == 0 and bool(cue) and not flowing
            if line_width > 0 and line_width + len(piece) <= width and not long_pause and not segment_break:
                line_width += len(piece)  # the line goes on
            else:
                piece = piece.strip()
                if cue and layout.max_line_count is not None and (long_pause or lines >= layout.max_line_count) or segment_break:
                    yield cue  # a new cue
                    cue, lines = [], 1
                elif line_width > 0:  # a new line in this cue
                    lines += 1
                    piece = "\n" + piece
                line_width = len(piece.strip())
            cue.append((piece, word))
            last = word.start
    if cue:
        yield cue
