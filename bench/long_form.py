"""Long-form throughput: distilwhisper vs the transformers ASR pipeline (chunk_length_s=15), same weights, same audio.

Each engine and batch size runs in its own child process (so its peak memory is its own), with the same thread
count, greedy (or --num-beams N), English, max_new_tokens=128 per chunk, from the audio file to the text: ours
streams the file (`model.transcribe(path)`), the pipeline reads it whole (its ffmpeg_read). Each file is timed
--runs times (median) after one warm-up call on its first 35 s; our sequential long form at a batch size above 1
times every file in one call instead (`transcribe(paths)`), since it batches windows of several files, not of one.
faster-whisper (`--engines ... faster-whisper`) runs its own long-form algorithms, with timestamps: at batch size 1 one 30 s window at a time, each starting where
the last one's final timestamp ends; above 1 its BatchedInferencePipeline (speech found by its VAD, cut into
windows of up to 30 s, a batch at a time), and its own token limit per window. Not our text, so read its speed beside its WER: where the files have
references (a `.segments.tsv` beside each, as the long fixtures do), every engine's WER (Distil-Whisper's recipe,
evaluate's normaliser) is in the table.

    python bench/long_form.py                                  # CPU fp32, batch 4, base fixture, ../shared/audio/long
    python bench/long_form.py --num-beams 5 --engines distilwhisper transformers faster-whisper
    python bench/long_form.py --engines distilwhisper-bf16 distilwhisper-int8 faster-whisper-int8 --batch-size 1
    python bench/long_form.py --engines distilwhisper-int8 faster-whisper-int8 --long-form chunked sequential
    python bench/long_form.py --device cuda --dtype float16 --batch-size 16 32 --random-dims distil-large-v2

--random-dims builds a full-size checkpoint with random weights from --seed in the Hugging Face layout (with
--model's tokenizer and feature extractor files), in bench/out/, so a GPU machine with no network can run it;
random weights decode to nonsense, but the same nonsense on both sides. --synthetic SECONDS benchmarks a
generated noise file instead of real speech. Prints a table and, last, one JSON line (also --json OUT).
"""

import argparse
import csv
import functools
import itertools
import json
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

import torch

from common import (
    DIMS, OUT, PRECISION_ENGINES, SHARED, Clock, PeakGpuMemory, emit, faster_whisper_model, ours, peak_rss_mib, run_child, transformers_pipeline, versions,
    with_tokenizer,
)  # fmt: skip

ENGINES = ["distilwhisper", "transformers", "faster-whisper", *PRECISION_ENGINES]  # the last: --dtype does not apply
RANDOM_DIMS = ["base", "distil-large-v2"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "whisper-base"),
                        help="checkpoint folder; with --random-dims, where the tokenizer files come from")
    parser.add_argument("--random-dims", default=None, choices=RANDOM_DIMS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--audio", nargs="+", default=sorted(map(str, (SHARED / "audio" / "long").glob("*.wav"))))
    parser.add_argument("--synthetic", type=float, default=None, metavar="SECONDS", help="a generated file instead")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[4])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--num-beams", type=int, default=1, help="beam search for every engine (faster-whisper: beam_size)")
    parser.add_argument("--engines", nargs="+", default=ENGINES[:2], choices=ENGINES)
    parser.add_argument("--long-form", nargs="+", default=["chunked"], choices=["chunked", "sequential"],
                        help="our long-form algorithms, each a row per engine of ours (sequential: the checkpoint's "
                             "token limit per window, as faster-whisper's, not --max-new-tokens)")
    parser.add_argument("--json", default=None, help="also write the JSON here")
    parser.add_argument("--child", default=None, choices=ENGINES, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def random_checkpoint(name: str, seed: int, tokenizer_dir: str) -> Path:
    """A `name`-shaped Whisper with random weights (transformers' own init, from `seed`), saved once in bench/out/,
    with `tokenizer_dir`'s tokenizer files and every special token but the end token suppressed."""
    from oracle import save_random_whisper

    folder = OUT / f"random-{name}-seed{seed}"
    if not (folder / "weights" / "model.safetensors").exists():
        save_random_whisper(folder / "weights", seed, init_std=0.02, **DIMS[name])
    return with_tokenizer(folder / "weights", Path(tokenizer_dir), folder / "checkpoint")


def synthetic_wav(seconds: float, seed: int) -> Path:
    """Noise whose loudness changes every half second, 16 kHz 16-bit, in bench/out/."""
    import numpy as np

    path = OUT / f"synthetic-{seconds:g}s-seed{seed}.wav"
    if not path.exists():
        rng = np.random.default_rng(seed)
        n = int(seconds * 16000)
        envelope = np.repeat(rng.uniform(0.01, 0.5, n // 8000 + 1), 8000)[:n]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, np.clip(rng.standard_normal(n) * envelope, -1, 1))
    return path


def write_wav(path: Path, samples) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes((samples * 32767).astype("<i2").tobytes())


def engine(name: str, model: str, device: str, dtype: str, batch_size: int, max_new_tokens: int, num_beams: int = 1,
           threads: int = 1, compile: bool = False, long_form: str = "chunked"):  # fmt: skip
    """`run(audio) -> text`: ours streams a file (`transcribe(path)`), the pipeline reads it whole (its ffmpeg_read),
    as does faster-whisper (our reader; its text by our tokenizer)."""
    if name == "transformers":
        return transformers_pipeline(model, device, dtype, batch_size, max_new_tokens=max_new_tokens, num_beams=num_beams)
    if name.startswith("faster-whisper"):
        from faster_whisper import BatchedInferencePipeline

        from distilwhisper.audio import load_audio

        network = faster_whisper_model(model, threads, PRECISION_ENGINES.get(name, "float32"))
        # Its windows hold up to 30 s of speech, not a chunk's: a chunk's max_new_tokens would cut them short.
        options = dict(language="en", beam_size=num_beams, temperature=0.0)
        transcribe: Callable
        if batch_size == 1:  # each window starts where the last one's final timestamp ends: nothing skipped
            transcribe = functools.partial(network.transcribe, condition_on_previous_text=False, vad_filter=False, **options)
        else:  # speech found by its VAD, cut into windows of up to 30 s, `batch_size` windows at a time
            transcribe = functools.partial(BatchedInferencePipeline(network).transcribe, batch_size=batch_size, **options)
        return lambda audio: "".join(segment.text for segment in transcribe(load_audio(audio))[0]).strip()
    sequential = long_form == "sequential"  # windows of up to 30 s of speech: a chunk's token limit would cut them
    transcribe = ours(model, device, PRECISION_ENGINES.get(name, dtype), compile=compile, language="en", batch_size=batch_size,
                      max_new_tokens=None if sequential else max_new_tokens, num_beams=num_beams, long_form=long_form)  # fmt: skip
    # A list of files (`batched_files`) comes back as their texts.
    return lambda audio: [r.text for r in transcribe(audio)] if isinstance(audio, list) else transcribe(audio).text


def batched_files(args: argparse.Namespace) -> bool:
    """Whether the child times every file in one call: our sequential long form batches windows of several files, not
    of one (each window waits for the one before), so its batch size means files decoded together."""
    return args.child.startswith("distilwhisper") and args.long_form[0] == "sequential" and args.batch > 1


def child(args: argparse.Namespace) -> dict:
    """Time one engine at one batch size on every file."""
    import numpy as np

    from distilwhisper.audio import SAMPLE_RATE, audio_duration, stream_audio

    torch.set_num_threads(args.threads)
    peak = PeakGpuMemory(args.device)
    start = time.perf_counter()
    run = engine(args.child, args.model, args.device, args.dtype, args.batch, args.max_new_tokens, args.num_beams, args.threads,
                 long_form=args.long_form[0])  # fmt: skip
    load_s = time.perf_counter() - start
    # Warm up on the first 35 s of the first file (two chunks: every code path), read without loading it all.
    with tempfile.TemporaryDirectory() as folder:
        warm_up = Path(folder) / "warm-up.wav"
        write_wav(warm_up, np.concatenate(list(itertools.islice(stream_audio(args.audio[0]), 4)))[: 35 * SAMPLE_RATE])
        run(str(warm_up))
    files: list[dict] = []
    clock, together = Clock(args.device), batched_files(args)
    if together:
        batches: list[list[str]] = []
        wall_s = clock.time(lambda: batches.append(run(args.audio)), args.runs, warm_up=False)
        files = [{"file": Path(path).name, "audio_s": audio_duration(path), "text": text} for path, text in zip(args.audio, batches[-1])]
    else:
        for path in args.audio:
            texts: list[str] = []
            file_s = clock.time(lambda: texts.append(run(path)), args.runs, warm_up=False)
            files.append({"file": Path(path).name, "audio_s": audio_duration(path), "wall_s": file_s, "text": texts[-1]})
        wall_s = sum(f["wall_s"] for f in files)
    name = f"{args.child} {args.long_form[0]}" if args.child.startswith("distilwhisper") else args.child
    return {"engine": name, "dtype": PRECISION_ENGINES.get(args.child, args.dtype), "batch_size": args.batch,
            "load_s": load_s, "peak_rss_mib": peak_rss_mib(), "cuda_max_allocated_mib": peak.mib(), "wall_s": wall_s,
            "files_together": together, "files": files}  # fmt: skip


def reference(path: str) -> str | None:
    """What is said in `path`: the texts of the segments file beside it (the long fixtures have one), else None."""
    segments = Path(path).with_suffix(".segments.tsv")
    if not segments.exists():
        return None
    with open(segments, newline="", encoding="utf-8") as f:
        return " ".join(row["text"] for row in csv.DictReader(f, delimiter="\t"))


def summarize(result: dict, score: Callable[[list[str]], float | None]) -> dict:
    audio_s, wall_s = sum(f["audio_s"] for f in result["files"]), result["wall_s"]
    texts = [f["text"] for f in result["files"]]
    return {key: result[key] for key in ("engine", "dtype", "batch_size", "peak_rss_mib", "cuda_max_allocated_mib", "load_s", "files_together")} | {
        "audio_s": audio_s, "wall_s": wall_s, "audio_s_per_s": audio_s / wall_s, "words": sum(len(t.split()) for t in texts),
        "wer": score(texts)}  # fmt: skip


def scorer(args: argparse.Namespace) -> Callable[[list[str]], float | None]:
    """texts -> Distil-Whisper's WER against the files' references (evaluate's normaliser), or None where some file
    has no reference or the weights are random."""
    from distilwhisper.evaluate.wer import corpus_wer, text_normalizer

    references = [text for path in args.audio if (text := reference(path)) is not None]
    if args.random_dims or len(references) < len(args.audio):
        return lambda texts: None
    _, normalize = text_normalizer(Path(args.model), "en")
    return lambda texts: corpus_wer([normalize(r) for r in references], [normalize(t) for t in texts])


def run(args: argparse.Namespace) -> dict:
    """Every engine at every batch size in its own process; the report, with speed-ups over the pipeline."""
    if args.random_dims:
        args.model = str(random_checkpoint(args.random_dims, args.seed, args.model))
    if args.synthetic:
        args.audio = [str(synthetic_wav(args.synthetic, args.seed))]
    rows, score = [], scorer(args)
    for batch in args.batch_size:
        passthrough = ["--model", args.model, "--runs", str(args.runs), "--max-new-tokens", str(args.max_new_tokens),
                       "--threads", str(args.threads), "--device", args.device, "--dtype", args.dtype,
                       "--batch-size", str(batch), "--num-beams", str(args.num_beams), "--audio", *args.audio]  # fmt: skip
        runs = [(name, form) for name in args.engines for form in (args.long_form if name.startswith("distilwhisper") else ["chunked"])]
        rows += [summarize(result, score) for name, form in runs
                 if (result := run_child(__file__, name, [*passthrough, "--long-form", form]))]  # fmt: skip
    for row in rows:
        baseline = next((r for r in rows if r["engine"] == "transformers" and r["batch_size"] == row["batch_size"]), None)
        row["speedup_vs_transformers"] = row["audio_s_per_s"] / baseline["audio_s_per_s"] if baseline else None
        int8_anchor = next((r for r in rows if r["engine"] == "faster-whisper-int8" and r["batch_size"] == row["batch_size"]), None)
        row["speedup_vs_faster_whisper_int8"] = row["audio_s_per_s"] / int8_anchor["audio_s_per_s"] if int8_anchor else None
    return {"benchmark": "long_form", "device": args.device, "dtype": args.dtype, "threads": args.threads,
            "model": args.model, "random_dims": args.random_dims, "seed": args.seed, "audio": args.audio,
            "runs": args.runs, "max_new_tokens": args.max_new_tokens, "num_beams": args.num_beams, "versions": versions(), "results": rows}  # fmt: skip


def main() -> None:
    args = parse_args()
    args.threads = args.threads or torch.get_num_threads()
    if args.child:
        args.batch = args.batch_size[0]
        print(json.dumps(child(args)))
        return
    report = run(args)
    rows = report["results"]
    print(f"{len(args.audio)} files, {sum(r['audio_s'] for r in rows[:1]):.0f} s of audio, {args.device} {args.dtype}, "
          f"{args.threads} threads, model {Path(args.model).name}, {args.num_beams} beam(s), max_new_tokens {args.max_new_tokens}")  # fmt: skip
    print(f"{'engine':<32}{'batch':>6}{'wall s':>9}{'audio s/s':>11}{'peak RSS MiB':>14}{'CUDA MiB':>10}{'words':>7}{'WER':>7}{'vs HF':>8}{'vs fw-int8':>11}")
    for r in rows:
        speedup = f"{r['speedup_vs_transformers']:.2f}x" if r["speedup_vs_transformers"] else "-"
        vs_int8 = f"{r['speedup_vs_faster_whisper_int8']:.2f}x" if r["speedup_vs_faster_whisper_int8"] else "-"
        cuda_mib = f"{r['cuda_max_allocated_mib']:.0f}" if r["cuda_max_allocated_mib"] is not None else "-"
        wer = f"{r['wer']:.2f}" if r["wer"] is not None else "-"
        print(f"{r['engine']:<32}{r['batch_size']:>6}{r['wall_s']:>9.2f}{r['audio_s_per_s']:>11.1f}{r['peak_rss_mib']:>14.0f}"
              f"{cuda_mib:>10}{r['words']:>7}{wer:>7}{speedup:>8}{vs_int8:>11}")  # fmt: skip
    emit(report, args.json)


if __name__ == "__main__":
    main()
