"""`python -m distilwhisper.evaluate MANIFEST.tsv --model ...`: word error rate as Distil-Whisper computes it.

The manifest is a tab-separated file with a header line; by default its column `file` holds audio paths
(relative to the manifest's folder) and `reference_text` what was said (`--columns` names others). Every
file is transcribed as the `distilwhisper` command would (over 30 s: long-form), `--batch-size` files at a
time. Then, as Distil-Whisper's training/run_eval.py scores it:

- references and hypotheses are normalised with Whisper's English normaliser and the checkpoint's spelling
  map (normalizer.json), or, when --language names another language, with the basic normaliser;
- a file whose normalised reference is empty is left out of the WER (it has no words to get wrong);
- WER = 100 * jiwer.wer(references, hypotheses) over the lists: all word errors over all reference words,
  not a mean of the files' WERs.

A file that cannot be read or decoded is reported on stderr and in the JSON ("error"), left out of the WER,
and makes the exit status 1: the WER of the files that did run is still printed, but it is not the corpus's.
A manifest that cannot be used (missing, empty, a column or an audio file missing) stops everything with
one line and status 2, before the model is loaded.

RTF (real-time factor) = processing time / audio duration, lower is faster (run_eval's "rtf" is its
inverse). A file's RTF is its batch's; `--batch-size 1` times each file alone. Reading the files is not
timed: features, encoder, decoding and detokenising are.
"""

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..audio import SAMPLE_RATE
from ..cli import HelpFormatter, add_transcription_options, check_transcription_options, describe, fail, flag_names, write_atomically
from ..errors import DistilWhisperError
from ..inputs import as_waveform
from ..languages import language_code
from ..plan import DecodePlan
from ..transcribe import Transcriber, load_model
from ..version import __version__
from ..weights import resolve_model_dir
from .normalizer import EnglishTextNormalizer, basic_normalize, load_spelling_map

EVAL_EXTRA = 'pip install "distilwhisper[eval]"'


@dataclass(frozen=True)
class Row:
    """One manifest line: where its audio is and what was said."""

    line: int  # in the manifest, for messages
    file: str  # as the manifest writes it
    path: Path
    reference: str


@dataclass
class FileScore:
    """One file's result: what the JSON's "files" list holds."""

    file: str
    reference: str
    hypothesis: str | None = None
    normalized_reference: str | None = None
    normalized_hypothesis: str | None = None
    wer: float | None = None  # percent; None when the file failed or its normalised reference is empty
    duration: float | None = None  # seconds of audio
    rtf: float | None = None  # its batch's processing time / audio duration
    error: str | None = None  # one line naming the file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m distilwhisper.evaluate", formatter_class=HelpFormatter,
                                     description="Word error rate of a checkpoint on a manifest of audio files and "
                                                 "their reference transcripts, as Distil-Whisper's evaluation computes it.",
                                     epilog="WER is in percent: all word errors over all reference words, after Whisper's "
                                            "English normaliser (the basic one when --language names another language); "
                                            "files whose normalised reference is empty are left out. RTF = processing "
                                            "time / audio duration, per batch. Exit status: 0, 1 when some file failed "
                                            "(left out of the WER), 2 when nothing could start.")  # fmt: skip
    parser.add_argument("manifest", help="a tab-separated file with a header line: audio paths (relative to the "
                                         "manifest's folder) and reference transcripts")  # fmt: skip
    parser.add_argument("--columns", nargs=2, default=["file", "reference_text"], metavar=("FILE", "TEXT"),
                        help="the manifest's columns of audio paths and of references (default: file reference_text)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N rows (default: all)")
    add_transcription_options(parser)
    parser.add_argument("--json", default=None, metavar="OUT",
                        help='also write {"wer": ..., "files": [...], ...} to OUT (written whole or not at all)')
    parser.add_argument("--version", action="version", version=f"distilwhisper {__version__}")
    return parser


def read_manifest(manifest: str | Path, file_column: str = "file", text_column: str = "reference_text",
                  limit: int | None = None) -> list[Row]:  # fmt: skip
    """Every row of a tab-separated manifest, its audio files checked to exist; anything wrong is one line."""
    rows = manifest_rows(manifest, file_column, text_column, limit)
    absent = [row for row in rows if not row.path.is_file()]
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise DistilWhisperError(f"{manifest} line {absent[0].line}: audio file not found: {absent[0].path}{more}")
    return rows


def manifest_rows(manifest: str | Path, file_column: str = "file", text_column: str | None = "reference_text",
                  limit: int | None = None) -> list[Row]:  # fmt: skip
    """Every row of a tab-separated manifest, its files not looked at (the scale runner makes a missing one an
    error row, not a failed job). Without a `text_column` every reference is empty."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise DistilWhisperError(f"manifest not found: {manifest}")
    try:
        with open(manifest, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t")
            if not reader.fieldnames:
                raise DistilWhisperError(f"{manifest} is empty: expected a header line naming {file_column} and {text_column}")
            missing = [c for c in (file_column, text_column) if c is not None and c not in reader.fieldnames]
            if missing:
                raise DistilWhisperError(
                    f"{manifest} has no column {' or '.join(missing)} (its columns: {', '.join(reader.fieldnames)}); "
                    "--columns FILE TEXT names others"
                )
            rows: list[Row] = []
            for record in reader:
                if limit is not None and len(rows) == limit:
                    break
                file, reference = (record[file_column] or "").strip(), record[text_column] if text_column else ""
                if not file or reference is None:
                    raise DistilWhisperError(f"{manifest} line {reader.line_num}: no {file_column if not file else text_column}")
                rows.append(Row(reader.line_num, file, manifest.parent / file, reference))
    except UnicodeDecodeError as e:
        raise DistilWhisperError(f"{manifest} is not UTF-8 text: {e.reason} at byte {e.start}") from None
    except csv.Error as e:
        raise DistilWhisperError(f"{manifest}: {e}") from None
    if not rows:
        raise DistilWhisperError(f"{manifest} has a header but no rows")
    return rows


def text_normalizer(model_dir: Path, language: str | None) -> tuple[str, Callable[[str], str]]:
    """("english", Whisper's English normaliser with the checkpoint's spelling map) unless `language` names
    another language, then ("basic", the basic normaliser): what run_eval.py applies to both sides."""
    if language is None or language_code(language) == "en":
        return "english", EnglishTextNormalizer(load_spelling_map(model_dir))
    return "basic", basic_normalize


def corpus_wer(references: list[str], hypotheses: list[str]) -> float | None:
    """100 * word errors / reference words over normalised texts, pairs with an empty reference left out:
    Distil-Whisper's WER. None when no reference has a word."""
    import jiwer

    pairs = [(r, h) for r, h in zip(references, hypotheses) if r]
    if not pairs:
        return None
    return 100 * jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_transcription_options(parser, args)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    try:
        return run(args)
    except KeyboardInterrupt:
        print("distilwhisper: interrupted", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    try:
        import jiwer  # noqa: F401 - only to fail now, not after the transcribing
    except ImportError:
        fail(f"WER needs jiwer, which is not installed: {EVAL_EXTRA}")
        return 2
    if args.json is not None and not Path(args.json).resolve().parent.is_dir():
        fail(f"cannot write {args.json}: its folder does not exist")  # said now, not after hours of transcribing
        return 2
    try:
        file_column, text_column = args.columns
        rows = read_manifest(args.manifest, file_column, text_column, args.limit)
        model_dir = resolve_model_dir(args.model)
        normalizer, normalize = text_normalizer(model_dir, args.language)
        transcriber = load_model(model_dir, device=args.device, dtype=args.dtype, compile=args.compile, assistant=args.assistant)
        plan = transcriber.plan(args.options)  # bad options fail before any work
        args.batch_size = args.batch_size or transcriber.default_batch_size
    except Exception as e:  # noqa: BLE001 - a bad manifest or a model that does not load is one line
        fail(flag_names(describe(e), args))
        return 2

    width = max(len(row.file) for row in rows)
    print(f"{'file':<{width}}  {'seconds':>8}  {'RTF':>6}  {'WER %':>6}", flush=True)
    scores = []
    processing = 0.0
    for start in range(0, len(rows), args.batch_size):
        batch = [FileScore(row.file, row.reference) for row in rows[start : start + args.batch_size]]
        processing += transcribe_batch(transcriber, plan, rows[start : start + args.batch_size], batch, args)
        for score in batch:
            if score.hypothesis is not None:
                score.normalized_reference, score.normalized_hypothesis = normalize(score.reference), normalize(score.hypothesis)
                score.wer = corpus_wer([score.normalized_reference], [score.normalized_hypothesis])
            if score.error is not None:
                fail(score.error)
            print(table_row(score, width), flush=True)
        scores += batch
    summary = summarize(scores, processing)
    summary |= {"model": str(args.model), "manifest": str(args.manifest), "normalizer": normalizer,
                "device": str(transcriber.device), "dtype": transcriber.precision}  # fmt: skip
    print(summary_line(summary))
    if args.json is not None:
        try:
            write_atomically(Path(args.json), json.dumps(summary | {"files": [asdict(s) for s in scores]}, ensure_ascii=False, indent=1))
        except OSError as e:
            fail(f"cannot write {args.json}: {e.strerror or e}")
            return 1
    return 1 if summary["failed"] else 0


def transcribe_batch(transcriber: Transcriber, plan: DecodePlan, rows: list[Row], scores: list[FileScore], args: argparse.Namespace) -> float:
    """Fill in the batch's hypotheses, durations and RTF (or errors); return the seconds spent transcribing."""
    loaded = []
    for row, score in zip(rows, scores):
        try:
            loaded.append((score, as_waveform(row.path)))
        except DistilWhisperError as e:  # its message names the file
            score.error = str(e)
        except Exception as e:  # noqa: BLE001 - a file that cannot be read (out of memory...) fails alone
            score.error = f"{row.path}: {describe(e)}"
    if not loaded:
        return 0.0
    started = time.perf_counter()
    # A file that fails in decoding (out of memory alone) fails alone; the batch's others are scored.
    outcomes = list(transcriber.outcomes(((None, w) for _, w in loaded), plan, args.options))
    elapsed = time.perf_counter() - started
    rtf = elapsed / (sum(len(w) for _, w in loaded) / SAMPLE_RATE)
    for (score, waveform), outcome in zip(loaded, outcomes):
        if isinstance(outcome, Exception):
            score.error = f"{score.file}: {describe(outcome)}"
        else:
            score.hypothesis, score.duration, score.rtf = outcome.text, len(waveform) / SAMPLE_RATE, rtf
    return elapsed


def table_row(score: FileScore, width: int) -> str:
    if score.error is not None:
        return f"{score.file:<{width}}  {'failed':>8}"
    wer = "-" if score.wer is None else f"{score.wer:.2f}"  # "-": an empty reference, left out of the WER
    return f"{score.file:<{width}}  {score.duration:8.2f}  {score.rtf:6.3f}  {wer:>6}"


def summarize(scores: list[FileScore], processing: float) -> dict:
    done = [s for s in scores if s.error is None]
    audio = sum(s.duration or 0.0 for s in done)
    references = [s.normalized_reference or "" for s in done]
    return {
        "wer": corpus_wer(references, [s.normalized_hypothesis or "" for s in done]),
        "scored": sum(1 for r in references if r),
        "empty_references": sum(1 for r in references if not r),
        "failed": len(scores) - len(done),
        "reference_words": sum(len(r.split()) for r in references),
        "audio_seconds": audio,
        "processing_seconds": processing,
        "rtf": processing / audio if audio else None,
    }


def summary_line(summary: dict) -> str:
    wer = "no file with a reference" if summary["wer"] is None else f"{summary['wer']:.2f}%"
    line = f"WER {wer} over {plural(summary['scored'], 'file')} ({plural(summary['reference_words'], 'reference word')})"
    if summary["empty_references"]:
        line += f", {summary['empty_references']} with an empty reference left out"
    if summary["failed"]:
        line += f", {summary['failed']} failed"
    if summary["rtf"] is not None:
        line += f"; {summary['audio_seconds']:.1f} s of audio in {summary['processing_seconds']:.1f} s, RTF {summary['rtf']:.3f}"
    return line


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


if __name__ == "__main__":
    sys.exit(main())
