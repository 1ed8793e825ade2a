"""`distilwhisper AUDIO [AUDIO ...]`: transcribe files, one readable line per failure, the rest still done.

Exit status: 0 when every file was transcribed, 1 when some failed, 2 when nothing could start
(bad options, a model that does not load), 130 when interrupted (Ctrl-C).
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from dataclasses import fields
from pathlib import Path

import torch

from .audio import AudioStream
from .devices import PRECISIONS
from .errors import DistilWhisperError, first_line
from .inputs import open_audio
from .longform import DEFAULT_CHUNK_LENGTH
from .options import LONG_FORMS, transcribe_options
from .plan import DecodePlan
from .subtitles import CueLayout, clock, subtitles
from .transcribe import Progress, Transcriber, Transcription, load_model
from .version import __version__
from .weights import MODEL_NAMES

DEFAULT_MODEL = "distil-whisper/distil-large-v2"
STDIN = "-"  # the audio argument that reads one audio file from standard input
FORMATS = ["txt", "json", "srt", "vtt"]
SUBTITLES = ("srt", "vtt")  # formats made of timed cues: they need timestamps


class HelpFormatter(argparse.HelpFormatter):
    """Wraps help only at spaces: a name such as distil-large-v3 must stay whole for people to copy it."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def build_parser() -> argparse.ArgumentParser:
    """Every option's help names its default; where that default is None, it says what None means."""
    parser = argparse.ArgumentParser(prog="distilwhisper", description="Transcribe speech with Whisper / Distil-Whisper.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("audio", nargs="+", help="audio files, - for standard input (WAV always; any format when ffmpeg or PyAV is installed)")
    add_transcription_options(parser)
    parser.add_argument("--timestamps", action="store_true",
                        help="decode with Whisper's timestamps: txt prints one '[start --> end] text' line per "
                             "segment, json adds the segments (start, end, text) (default: off)")
    parser.add_argument("--word-timestamps", action="store_true",
                        help="time every word from the model's alignment heads (as transformers' "
                             "return_timestamps='word'; turns --timestamps on): json adds the words (start, end, text), "
                             "srt and vtt cut their cues at words; txt is unchanged (default: off)")
    parser.add_argument("--max-line-width", type=int, default=None, metavar="N",
                        help="with --word-timestamps, srt and vtt lines of at most N characters, wrapped at words "
                             "(default: a line per cue)")
    parser.add_argument("--max-line-count", type=int, default=None, metavar="N",
                        help="with --word-timestamps and --max-line-width, cues of at most N lines, cut at words "
                             "across segments and at pauses over 3 s (default: a cue per segment)")
    parser.add_argument("--highlight-words", action="store_true",
                        help="with --word-timestamps, srt and vtt underline each word as it is spoken: a cue per "
                             "word (default: off)")
    parser.add_argument("--output-format", default="txt", choices=FORMATS,
                        help="txt: the text; json: an object with file and Transcription.to_dict()'s fields: "
                             f"{', '.join(f.name for f in fields(Transcription))} (acceptance_rate: null without "
                             "--assistant); srt or vtt: subtitles, one cue per segment (these turn --timestamps on) "
                             "(default: %(default)s)")
    parser.add_argument("--output-dir", default=None, metavar="DIR",
                        help="write DIR/<name>.txt|json|srt|vtt for each input (default: print each input's output)")
    # grep's convention (-H/-h): printed lines name their file when there are several inputs.
    parser.add_argument("--with-filename", dest="with_filename", action="store_true", default=None,
                        help="start each printed txt line with the input's path and ':', as grep -H does; put a "
                             "'==> path <==' line before each printed srt or vtt, as head does "
                             "(default: when there are several inputs)")
    parser.add_argument("--no-filename", dest="with_filename", action="store_false", default=None,
                        help="print the output alone, as grep -h does (default: when there is one input)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar on stderr for long inputs (default: one is drawn when stderr is a terminal)")
    parser.add_argument("--verbose", action="store_true",
                        help="say on stderr where the model runs and in what precision (what --dtype auto chose) "
                             "(default: off)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def add_transcription_options(parser: argparse.ArgumentParser) -> None:
    """The model and decoding options, shared with `python -m distilwhisper.evaluate`."""
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME_OR_PATH",
                        help=f"a name ({', '.join(MODEL_NAMES)}), a checkpoint folder or a hub repo id "
                             "(default: %(default)s)")
    parser.add_argument("--assistant", default=None, metavar="NAME_OR_PATH",
                        help="a draft model for speculative decoding (a checkpoint folder or hub repo id, e.g. "
                             "distil-whisper/distil-large-v2 for --model large-v2, or int8: the model's own decoder "
                             "with int8 weights, on the CPU): the same text, sooner when the draft is often "
                             "right and cheap (default: none)")
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when available, else the CPU), cpu, cuda, cuda:1... (default: %(default)s)")
    parser.add_argument("--dtype", default=None, choices=PRECISIONS,
                        help="int8: int8 weights and activations on the CPU; auto: the fastest that keeps accuracy (float16 on a GPU, "
                             "int8 on the CPU; with --compile bfloat16 where the CPU computes it natively, else "
                             "float32) (default: float16 on a GPU, float32 on the CPU)")
    parser.add_argument("--compile", action="store_true",
                        help="compile the decoder step, and on a GPU the encoder too (torch.compile, CUDA graphs on "
                             "a GPU): the first batch of each size pays seconds to minutes, later ones run faster; for "
                             "many files, not one; on a CPU it hardly pays (default: off)")
    parser.add_argument("--language", default=None, metavar="CODE",
                        help="language code or name, e.g. en (default: the checkpoint's, else detected for each file, "
                             "as transformers does; English-only .en models: en, and only en)")
    parser.add_argument("--task", default=None, choices=["transcribe", "translate"],
                        help="default: the checkpoint's, else transcribe (English-only .en models: transcribe only)")
    parser.add_argument("--initial-prompt", default=None, metavar="TEXT",
                        help="text the model reads as if it came just before the audio: names, spellings, a style "
                             "of punctuation it should follow (at most 223 tokens; default: none)")
    parser.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                        help="tokens per input at most (default: the checkpoint's max_length, at most what the decoder "
                             "holds after the prompt: 444 of 448 positions)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="files, or chunks of a long file, decoded together (default: 8 on the CPU, 16 on a GPU)")
    parser.add_argument("--chunk-length", type=float, default=DEFAULT_CHUNK_LENGTH, metavar="SECONDS",
                        help="audio longer than 30 s is transcribed in chunks this long (1 to 30), overlapping by "
                             "a sixth of it on each side, stitched where the overlaps agree (default: %(default)s)")
    parser.add_argument("--long-form", default="chunked", choices=LONG_FORMS,
                        help="audio longer than 30 s: chunked (--chunk-length chunks, decoded together and stitched: "
                             "Distil-Whisper's recipe, the ASR pipeline's chunk_length_s) or sequential (one 30 s window "
                             "after another, each from where the last one's timestamps end: openai/whisper's, "
                             "faster-whisper's and generate()'s long form; half the encoder's work, one window of a file "
                             "at a time) (default: %(default)s)")
    parser.add_argument("--num-beams", type=int, default=None, metavar="N",
                        help="beam search with N hypotheses per window, as transformers' generate(num_beams=N): 5 is "
                             "what its ASR pipeline, openai/whisper and faster-whisper use by default; slower than "
                             "greedy, not with --assistant (default: 1, greedy, Distil-Whisper's own recipe)")
    parser.add_argument("--beam-size", type=int, default=None, metavar="N", help="the same as --num-beams (default: 1)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.timestamps = args.timestamps or args.output_format in SUBTITLES  # words turn timestamps on in the options
    for flag in ("max_line_width", "max_line_count", "highlight_words"):
        value = getattr(args, flag)
        if value not in (None, False) and not args.word_timestamps:
            parser.error(f"--{flag.replace('_', '-')} cuts cues at words: it needs --word-timestamps")
        if value is not None and not isinstance(value, bool) and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    args.layout = CueLayout(args.max_line_width, args.max_line_count, args.highlight_words)
    check_transcription_options(parser, args)
    # Only printed output needs the name: JSON carries "file", and an output file holds one transcript.
    wanted = len(args.audio) > 1 if args.with_filename is None else args.with_filename
    args.with_filename = wanted and args.output_format != "json" and args.output_dir is None
    return args


def check_transcription_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`args.options`, the flags as TranscribeOptions; what those refuse is refused as argparse refuses a bad
    option (usage, one line, status 2), naming the flag."""
    try:
        beams = {name: getattr(args, name) for name in ("num_beams", "beam_size") if getattr(args, name) is not None}
        args.options = transcribe_options(
            language=args.language, task=args.task, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
            chunk_length=args.chunk_length, long_form=args.long_form, return_timestamps=getattr(args, "timestamps", False),
            initial_prompt=args.initial_prompt, word_timestamps=getattr(args, "word_timestamps", False), **beams,
        )  # fmt: skip
    except DistilWhisperError as e:
        parser.error(flag_names(str(e), args))


def flag_names(message: str, args: argparse.Namespace) -> str:
    """The API's option errors start with the parameter's Python name ("max_new_tokens must be ..."); the command
    line names the flag that set it (--max-new-tokens), which argparse spells from that name."""
    name, sep, rest = message.partition(" must be ")
    return f"--{name.replace('_', '-')}{sep}{rest}" if sep and name in vars(args) else message


def render(result: Transcription, source: str, output_format: str, timestamps: bool = False, layout: CueLayout = CueLayout()) -> str:
    """One input's output, without the final newline. Whisper's leading space is dropped from every text. Subtitles
    are cut at words when the result has words (`layout`)."""
    if output_format == "json":
        return json.dumps({"file": source} | result.to_dict() | {"text": result.text.strip()}, ensure_ascii=False)
    if output_format in SUBTITLES:
        return subtitles(result.segments, output_format, result.words, layout)
    if timestamps:
        return "\n".join(f"[{clock(s.start)} --> {clock(s.end)}] {s.text.strip()}" for s in result.segments)
    return result.text.strip()


def with_filename(output: str, source: str, args: argparse.Namespace) -> str:
    """Name the input as grep does on each txt line, or as head does above an srt or vtt document."""
    if args.output_format in SUBTITLES:
        return f"==> {source} <==\n{output}"
    return "\n".join(f"{source}:{line}" for line in output.split("\n"))


def write_atomically(path: Path, text: str) -> None:
    """Write beside the target, then rename over it: readers never see a half-written file.

    The file gets the mode an ordinary new file gets (0644 under umask 022), or the mode of the file it
    replaces; mkstemp alone would leave 0600.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def current_umask() -> int:
    umask = os.umask(0)  # the only way to read it is to set it
    os.umask(umask)
    return umask


def fail(message: str) -> None:
    print(f"distilwhisper: error: {message}", file=sys.stderr)


def warn(message: str) -> None:
    print(f"distilwhisper: warning: {message}", file=sys.stderr)


def describe(error: BaseException) -> str:
    """One line for any failure: ours are already sentences; others (out of memory...) get their type named."""
    if isinstance(error, DistilWhisperError):
        return str(error)
    reason = first_line(error)
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__


def input_name(source: str) -> str:
    """How messages and outputs name an input: its path as given, and standard input as <stdin>."""
    return "<stdin>" if source == STDIN else printable(source)


def printable(path: str) -> str:
    """A path as UTF-8 text can hold it: bytes of a file name that are not UTF-8 (which Python keeps as lone
    surrogates, and which standard output and a JSON file cannot encode) written as \\xff escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def output_path(source: str, args: argparse.Namespace) -> Path:
    stem = "stdin" if source == STDIN else Path(source).stem
    return Path(args.output_dir) / f"{stem}.{args.output_format}"


def drop_clashing_outputs(sources: list[str], args: argparse.Namespace) -> list[str]:
    """Outputs are named after the input's stem: an input whose output would overwrite an earlier
    input's (a/x.wav, b/x.wav) fails instead of silently replacing it."""
    owners: dict[Path, str] = {}
    kept = []
    for source in sources:
        target = output_path(source, args)
        if target in owners:
            fail(f"{source}: its output {target} would overwrite that of {owners[target]}")
        else:
            owners[target] = source
            kept.append(source)
    return kept


def progress_bars(names: list[str]) -> Progress:
    """transcribe's progress callback for long inputs named `names`, decoded in that order, each announced by a
    call with no chunk done: draws `name: [######              ] 12/40 chunks, 31.2 audio s/s` in place on stderr (a
    count alone when the total is unknown), each input's bar over the last one's. `erase_progress()` clears it."""
    upcoming, name, started = iter(names), "", time.monotonic()

    def draw(done: int, total: int | None, seconds: float) -> None:
        nonlocal name, started
        if done == 0:
            name, started = next(upcoming, name), time.monotonic()
        rate = seconds / max(time.monotonic() - started, 1e-9)
        count = f"[{'#' * (20 * min(done, total) // total):<20}] {done}/{total}" if total else str(done)
        print(f"\r{name}: {count} chunks, {rate:.1f} audio s/s\033[K", end="", file=sys.stderr, flush=True)

    return draw


def erase_progress() -> None:
    print("\r\033[K", end="", file=sys.stderr, flush=True)


def transcribe_batch(transcriber: Transcriber, plan: DecodePlan, sources: list[str], args: argparse.Namespace, spool: str = "") -> int:
    """Transcribe the files that load, write or print each result; return how many files failed. Standard
    input, when it is one of them, is copied into the folder `spool` first. A file that fails (a stream failing
    part-way as ffmpeg exits with an error, running out of memory) fails alone: the others are still written."""
    loaded: list[tuple[str, torch.Tensor | AudioStream]] = []
    for source in sources:
        try:  # standard input is read here, so that it fails alone like any file (main lets "-" in once)
            loaded.append((source, open_audio(spool_stdin(spool), input_name(source)) if source == STDIN else open_audio(source)))
        except DistilWhisperError as e:  # its message names the file
            fail(str(e))
        except Exception as e:  # noqa: BLE001 - a file that cannot be read (out of memory...) fails alone
            fail(f"{input_name(source)}: {describe(e)}")
    long_names = [input_name(source) for source, audio in loaded if isinstance(audio, AudioStream)]
    progress = progress_bars(long_names) if long_names and not args.quiet and sys.stderr.isatty() else None
    failures, results = len(sources) - len(loaded), []
    try:
        outcomes = transcriber.outcomes(((None, audio) for _, audio in loaded), plan, args.options, progress)
        for (source, audio), outcome in zip(loaded, outcomes):
            if isinstance(outcome, Exception):
                name, reason = input_name(source), describe(outcome)
                fail(reason if isinstance(outcome, DistilWhisperError) and name in reason else f"{name}: {reason}")  # named once
                failures += 1
            else:
                results.append((source, audio, outcome))
    finally:
        if progress:
            erase_progress()
    for source, audio, result in results:
        if result.truncated and isinstance(audio, AudioStream):
            warn(f"{input_name(source)}: some chunk's transcript was cut at --max-new-tokens before its end")
        elif result.truncated:
            warn(f"{input_name(source)}: the transcript was cut at {len(result.tokens)} tokens (--max-new-tokens) before its end")
        failures += not emit(result, source, args)
    return failures


def emit(result: Transcription, source: str, args: argparse.Namespace) -> bool:
    """Print `result`, or write it into --output-dir; False (and one line on stderr) when that fails."""
    output = render(result, input_name(source), args.output_format, args.timestamps, args.layout)
    if args.output_dir is None:
        # A blank line parts one file's last cue from the next file's header, as it parts cues.
        end = "\n\n" if args.output_format in SUBTITLES and len(args.audio) > 1 else "\n"
        try:
            print(with_filename(output, printable(source), args) if args.with_filename else output, end=end, flush=True)
        except BrokenPipeError:
            raise  # the reader has gone: main stops
        except OSError as e:  # a full disk behind a redirection...
            fail(f"{input_name(source)}: cannot write to standard output: {e.strerror or e}")
            return False
        return True
    target = output_path(source, args)
    try:
        write_atomically(target, output)
    except OSError as e:
        fail(f"{input_name(source)}: cannot write {target}: {e.strerror or e}")
        return False
    return True


def spool_stdin(folder: str) -> str:
    """Standard input copied into a file in `folder` a block at a time, so that it is read like any file:
    streamed when it is long (memory bounded), and decodable when its format needs seeking (an MP4's index)."""
    path = os.path.join(folder, "stdin")
    with open(path, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
    return path


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_args(argv))
    except KeyboardInterrupt:
        # Files already written stay, whole; write_atomically removes the temporary file of one being written.
        print("distilwhisper: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT: what shells report for a command that Ctrl-C ended
    except BrokenPipeError:
        # Whoever read standard output stopped (`distilwhisper *.wav | head -1`): stop quietly, as commands that
        # SIGPIPE ends do. Standard output now leads nowhere, so that Python's flush at exit fails no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


def run(args: argparse.Namespace) -> int:
    if args.audio.count(STDIN) > 1:
        fail(f"standard input ({STDIN}) can be read only once")
        return 2
    if args.output_dir is not None:
        try:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # mkdir's "File exists" would read as if the folder were there, in the way
            fail(f"cannot create output folder {args.output_dir}: it exists and is not a folder")
            return 2
        except OSError as e:
            fail(f"cannot create output folder {args.output_dir}: {e.strerror or e}")
            return 2
    try:
        transcriber = load_model(args.model, device=args.device, dtype=args.dtype, compile=args.compile, assistant=args.assistant)
        plan = transcriber.plan(args.options)  # bad options fail before any work
    except Exception as e:  # noqa: BLE001 - a model that does not load or fit is one line, not a traceback
        fail(flag_names(describe(e), args))
        return 2
    if args.verbose:
        print(f"distilwhisper: {args.model} on {transcriber.device} in {transcriber.precision}", file=sys.stderr)
    batch_size = args.batch_size or transcriber.default_batch_size
    sources = args.audio if args.output_dir is None else drop_clashing_outputs(args.audio, args)
    batches = [sources[i : i + batch_size] for i in range(0, len(sources), batch_size)]
    with contextlib.ExitStack() as cleanup:
        spool = ""  # where standard input's copy goes, when it is an input
        if STDIN in sources:
            try:
                spool = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="distilwhisper-"))
            except OSError as e:
                fail(f"cannot make a temporary folder for standard input: {e.strerror or e}")
                return 2
        failures = len(args.audio) - len(sources) + sum(transcribe_batch(transcriber, plan, batch, args, spool) for batch in batches)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
