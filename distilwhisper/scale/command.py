"""`python -m distilwhisper.scale INPUT --output DIR --model ...`: the job from the command line, a progress line on
stderr while it runs and a summary at the end.

Exit status: 0 when every input has a row and none failed, 1 when some failed (their rows hold the error) or some
have no row (run the same command again to resume), 2 when nothing could start, 130 when interrupted.
"""

import argparse
import importlib.util
import sys

from ..cli import HelpFormatter, add_transcription_options, check_transcription_options, describe, fail, flag_names
from ..version import __version__
from .sources import MANIFEST_COLUMNS, SCALE_EXTRA


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m distilwhisper.scale", formatter_class=HelpFormatter,
                                     description="Transcribe (and pseudo-label) a dataset on a Ray cluster: resumable, "
                                                 "every input exactly once in the output, with Distil-Whisper's WER filter.",
                                     epilog="Output: parquet part files and job.json in --output; docs/scale.md gives the "
                                            "columns. Exit status: 0, 1 when some input failed or has no row yet (run "
                                            "again to resume), 2 when nothing could start.")  # fmt: skip
    parser.add_argument("input", help="a TSV manifest as `python -m distilwhisper.evaluate` reads it, or a folder or glob "
                                      "of parquet files as Hugging Face datasets writes them (an audio column of "
                                      "{bytes, path})")  # fmt: skip
    parser.add_argument("--output", required=True, metavar="DIR", help="where the part files and job.json go; the "
                        "same command again resumes there")  # fmt: skip
    parser.add_argument("--columns", nargs=2, default=None, metavar=("AUDIO", "TEXT"),
                        help=f"INPUT's columns of audio and of reference text (default: {' '.join(MANIFEST_COLUMNS)} for a "
                             "manifest, audio and the first of text, sentence, transcription, reference_text for "
                             "parquet; without a text column, no WER)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N inputs (default: all)")
    parser.add_argument("--address", default=None, help="auto or HOST:PORT: join that Ray cluster (default: start a "
                        "local Ray on this machine)")  # fmt: skip
    parser.add_argument("--replicas", default="1", metavar="MIN[-MAX]",
                        help="model replicas, each a loaded model: a number, or a range the pool grows within (default: 1)")
    parser.add_argument("--gpus-per-replica", type=float, default=None, metavar="F",
                        help="GPUs each replica asks Ray for, 0.5 to share one between two (default: 1 when the cluster "
                             "has GPUs, else 0)")  # fmt: skip
    parser.add_argument("--cpus-per-replica", type=float, default=1.0, metavar="F",
                        help="CPUs each replica asks Ray for; its torch threads (default: %(default)s)")
    parser.add_argument("--wer-threshold", type=float, default=10.0, metavar="P",
                        help="a row is kept when its WER against the reference is below P percent (default: %(default)s)")
    parser.add_argument("--timestamps", action="store_true", help="decode with timestamps and write each row's segments")
    add_transcription_options(parser)
    parser.add_argument("--version", action="version", version=f"distilwhisper {__version__}")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_transcription_options(parser, args)
    low, _, high = args.replicas.partition("-")
    if not (low.isdigit() and (high or low).isdigit()) or not 1 <= int(low) <= int(high or low):
        parser.error(f"--replicas takes a number or MIN-MAX (1 or more), got {args.replicas!r}")
    args.replicas = (int(low), int(high or low))
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.cpus_per_replica <= 0 or (args.gpus_per_replica or 0) < 0:
        parser.error("--cpus-per-replica must be above 0 and --gpus-per-replica at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if any(importlib.util.find_spec(name) is None for name in ("ray", "pyarrow", "jiwer")):
        fail(f"the scale runner needs Ray Data, pyarrow and jiwer: {SCALE_EXTRA}")
        return 2
    from .runner import ScaleOptions, Summary, transcribe_dataset

    options = ScaleOptions(
        args.output, args.model, args.options, args.address, args.replicas, args.gpus_per_replica, args.cpus_per_replica,
        None if args.device == "auto" else args.device, args.dtype, args.compile, args.assistant, args.wer_threshold,
        tuple(args.columns) if args.columns else None, args.limit,
    )  # fmt: skip

    def show(summary: Summary) -> None:
        """On a terminal, one line redrawn; in a log, a line for each part file."""
        if sys.stderr.isatty():
            print(f"\r{progress_line(summary)}\033[K", end="", file=sys.stderr, flush=True)
        else:
            print(progress_line(summary), file=sys.stderr, flush=True)

    try:
        summary = transcribe_dataset(args.input, options, show)
    except KeyboardInterrupt:
        print("\ndistilwhisper: interrupted; the rows written so far stay: run the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - bad input, options or a model that does not load: one line
        fail(flag_names(describe(e), args))
        return 2
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(summary_lines(summary))
    return 1 if summary.failed or summary.missing else 0


def progress_line(summary) -> str:
    return (f"{summary.done} done, {summary.skipped} skipped, {summary.failed} failed of {summary.inputs}; "
            f"{summary.audio_seconds / 3600:.2f} h of audio, {summary.speed:.1f} audio s/s")  # fmt: skip


def summary_lines(summary) -> str:
    wer = "no reference" if summary.wer is None else f"{summary.wer:.2f}%"
    kept_wer = "" if summary.kept_wer is None else f" (WER {summary.kept_wer:.2f}%)"
    lines = [progress_line(summary), f"WER {wer} over all transcribed rows; {summary.kept} kept by the WER filter{kept_wer}",
             f"output: {summary.output}"]  # fmt: skip
    if summary.missing:
        lines.append(f"{summary.missing} inputs have no row yet: run the same command again to resume")
    return "\n".join(lines)
