"""One output row per input, and the WER filter Distil-Whisper's pseudo-labelling applies to it.

Every row has the same columns (SCHEMA), whether it holds a transcript or an error, so that every part file of a job
reads as one table and a reader can join on `id`. `wer` and `keep` are written on every row, so a stricter threshold
can be applied afterwards without transcribing again: keep = wer < threshold.
"""

from collections.abc import Callable

import pyarrow as pa  # type: ignore[import-untyped]

from ..transcribe import Transcription
from .sources import Item

SEGMENT = pa.struct([("start", pa.float64()), ("end", pa.float64()), ("text", pa.string())])
SCHEMA = pa.schema([
    ("id", pa.string()), ("file", pa.string()),
    ("text", pa.string()), ("tokens", pa.list_(pa.int32())), ("language", pa.string()),
    ("avg_logprob", pa.float64()), ("no_speech_prob", pa.float64()), ("truncated", pa.bool_()),
    ("segments", pa.list_(SEGMENT)), ("acceptance_rate", pa.float64()),
    ("duration", pa.float64()),  # seconds of audio; None for a stream that does not say its length, or an error
    ("seconds", pa.float64()),  # processing time: its batch's, shared out by duration
    ("error", pa.string()),  # one line naming the input; None when it was transcribed
    ("reference", pa.string()),  # what was said, as INPUT has it ("" when it does not say)
    # Against the normalised reference: word errors and words (summed over rows: the corpus WER), WER in percent
    # (None without reference words), and whether the WER filter keeps the row.
    ("word_errors", pa.int64()), ("reference_words", pa.int64()), ("wer", pa.float64()), ("keep", pa.bool_()),
])  # fmt: skip
EMPTY = {"text": None, "tokens": None, "language": None, "avg_logprob": None, "no_speech_prob": None, "truncated": None,
         "segments": None, "acceptance_rate": None}  # fmt: skip


def transcribed_row(item: Item, result: Transcription, duration: float | None, seconds: float, normalize: Callable[[str], str],
                    threshold: float) -> dict:  # fmt: skip
    errors, words = word_errors(normalize(item.reference), normalize(result.text))
    wer = 100 * errors / words if words else None
    fields = result.to_dict()
    fields["segments"] = fields["segments"] or None  # None unless timestamps were asked for
    return base_row(item) | fields | {"duration": duration, "seconds": seconds, "word_errors": errors,
                                      "reference_words": words, "wer": wer, "keep": keeps(wer, threshold)}  # fmt: skip


def error_row(item: Item, message: str) -> dict:
    return base_row(item) | EMPTY | {"duration": None, "seconds": None, "error": message}


def base_row(item: Item) -> dict:
    return {"id": item.id, "file": item.file, "reference": item.reference, "error": None, "word_errors": None,
            "reference_words": None, "wer": None, "keep": False}  # fmt: skip


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words) between normalised texts, as jiwer counts them:
    summed over rows they give the corpus WER run_eval.py computes (all errors over all reference words). A row
    whose normalised reference is empty has nothing to score: (0, 0)."""
    import jiwer

    if not reference:
        return 0, 0
    counts = jiwer.process_words(reference, hypothesis)
    return counts.substitutions + counts.deletions + counts.insertions, len(reference.split())


def keeps(wer: float | None, threshold: float) -> bool:
    """Distil-Whisper's WER filter: a pseudo-label is kept when it has a reference and its WER is below the
    threshold (strictly)."""
    return wer is not None and wer < threshold
