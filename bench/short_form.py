"""Short-form latency: distilwhisper vs transformers vs faster-whisper, same weights, same audio, one run.

Each engine runs in its own child process (so its peak memory is its own), on the same decoded 16 kHz
samples, with the same thread count, greedy (or with --num-beams N, each engine's beam search), English, no
timestamps. Per file it takes the median of
--runs timed calls after one warm-up call; a call covers features, encoder, decoding and detokenising.

    python bench/short_form.py                        # base fixture, every file in ../shared/audio/short
    python bench/short_form.py --json bench/out/short.json
    python bench/short_form.py --initial-prompt "Dashwood, Norland."  # every engine reads the same previous text
    python bench/short_form.py --num-beams 5          # what the pipeline, openai/whisper and faster-whisper default to
    python bench/short_form.py --word-timestamps      # the cost of word times: ours and the pipeline's, with and without
    python bench/short_form.py --engines distilwhisper distilwhisper-bf16 distilwhisper-int8 faster-whisper-int8

A CPU without native bfloat16 (most AVX2 machines) is stood in for by limiting every library's kernels to AVX2:
ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 CT2_FORCE_CPU_ISA=AVX2 (ours in
bfloat16 is then refused, and its row left out).

With --word-timestamps the engines decode with timestamps, each once without word times and once with them (ours:
word_timestamps=True; transformers: its ASR pipeline, unchunked, return_timestamps=True vs "word"), and the report
adds what the words cost over the same decoding without them; "tokens" are then the transcript's words.

Prints a table and, last, one JSON line. faster-whisper needs a CTranslate2 copy of the checkpoint; it is
converted once into bench/out/ (ct2-transformers-converter) when faster-whisper is installed.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch

from common import (PRECISION_ENGINES, SHARED, Clock, emit, faster_whisper, ours, peak_rss_mib, run_child, transformers_generate,
                    transformers_pipeline, versions)  # fmt: skip

# distilwhisper-compiled: load_model(..., compile=True); its first call per file shape compiles (see "first s").
ENGINES = ["distilwhisper", "distilwhisper-compiled", *PRECISION_ENGINES, "transformers", "faster-whisper"]
# --word-timestamps: timestamps without and with word times, ours and the pipeline's (+words: with them).
WORD_ENGINES = ["distilwhisper", "distilwhisper+words", "transformers-pipeline", "transformers-pipeline+words"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "whisper-base"))
    parser.add_argument("--audio", nargs="+", default=sorted(map(str, (SHARED / "audio" / "short").glob("*.wav"))))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch / CTranslate2 threads (default: all cores)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--initial-prompt", default=None, help="previous text for every engine (default: none)")
    parser.add_argument("--num-beams", type=int, default=1, help="beam search for every engine (faster-whisper: beam_size)")
    parser.add_argument("--word-timestamps", action="store_true", help="time word timestamps' cost (engines: WORD_ENGINES)")
    parser.add_argument("--engines", nargs="+", default=None, choices=ENGINES + WORD_ENGINES[1:])
    parser.add_argument("--json", default=None, help="also write the JSON here")
    parser.add_argument("--child", default=None, choices=ENGINES + WORD_ENGINES[1:], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.engines = args.engines or (WORD_ENGINES if args.word_timestamps else ENGINES)
    return args


def engine(args: argparse.Namespace):
    """`run(samples) -> tokens decoded` (with --word-timestamps: words in the transcript) for the engine `args.child`."""
    words = args.child.endswith("+words")
    if args.word_timestamps and args.child.startswith("distilwhisper"):
        transcribe = ours(args.model, language="en", max_new_tokens=args.max_new_tokens, initial_prompt=args.initial_prompt,
                          return_timestamps=True, word_timestamps=words, num_beams=args.num_beams)  # fmt: skip
        return lambda samples: len(transcribe(samples).text.split())
    if args.word_timestamps:
        pipe = transformers_pipeline(args.model, "cpu", "float32", batch_size=1, chunk_length_s=None,
                                     return_timestamps="word" if words else True, max_new_tokens=args.max_new_tokens,
                                     num_beams=args.num_beams)  # fmt: skip
        return lambda samples: len(pipe(samples).split())
    dtype = PRECISION_ENGINES.get(args.child, "float32")
    if args.child.startswith("distilwhisper"):
        transcribe = ours(args.model, dtype=dtype, compile=args.child == "distilwhisper-compiled", language="en",
                          max_new_tokens=args.max_new_tokens, initial_prompt=args.initial_prompt, num_beams=args.num_beams)  # fmt: skip
        return lambda samples: len(transcribe(samples).tokens)
    if args.child == "transformers":
        generate, _ = transformers_generate(args.model, "cpu", torch.float32, args.max_new_tokens, initial_prompt=args.initial_prompt,
                                            num_beams=args.num_beams)  # fmt: skip
        return lambda samples: len(generate([samples])[0])
    run = faster_whisper(args.model, args.threads, args.max_new_tokens, args.initial_prompt, compute_type=dtype, beam_size=args.num_beams)
    return lambda samples: len(run([samples])[0])


def child(args: argparse.Namespace) -> dict:
    """Time one engine on every file."""
    from distilwhisper.audio import SAMPLE_RATE, load_audio

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    run = engine(args)
    load_s = time.perf_counter() - start
    files, first_call_s, clock = [], None, Clock()
    for path in args.audio:
        samples = load_audio(path)
        start = time.perf_counter()
        tokens = run(samples)  # the warm-up
        first_call_s = first_call_s or time.perf_counter() - start  # the first file's: any compilation is in it
        latency = clock.time(lambda: run(samples), args.runs, warm_up=False)
        files.append({"file": Path(path).name, "audio_s": len(samples) / SAMPLE_RATE, "latency_s": latency, "tokens": tokens})
    return {"engine": args.child, "dtype": PRECISION_ENGINES.get(args.child, "float32"), "load_s": load_s,
            "first_call_s": first_call_s, "peak_rss_mib": peak_rss_mib(), "files": files}  # fmt: skip


def summarize(result: dict) -> dict:
    files = result["files"]
    latency = sum(f["latency_s"] for f in files)
    return {
        "engine": result["engine"],
        "dtype": result["dtype"],
        "median_latency_s": statistics.median(f["latency_s"] for f in files),
        "total_latency_s": latency,
        "rtf": latency / sum(f["audio_s"] for f in files),
        "tokens_per_s": sum(f["tokens"] for f in files) / latency,
        "peak_rss_mib": result["peak_rss_mib"],
        "load_s": result["load_s"],
        "first_call_s": result["first_call_s"],
    }


def run(args: argparse.Namespace) -> dict:
    """Every engine in its own process; the report, with each engine's speed-up over transformers."""
    passthrough = ["--model", args.model, "--runs", str(args.runs), "--max-new-tokens", str(args.max_new_tokens),
                   "--threads", str(args.threads), "--num-beams", str(args.num_beams), "--audio", *args.audio]  # fmt: skip
    passthrough += [] if args.initial_prompt is None else ["--initial-prompt", args.initial_prompt]
    passthrough += ["--word-timestamps"] if args.word_timestamps else []
    rows = [summarize(result) for name in args.engines if (result := run_child(__file__, name, passthrough))]
    baseline_engine = "transformers-pipeline" if args.word_timestamps else "transformers"
    baseline = next((r["total_latency_s"] for r in rows if r["engine"] == baseline_engine), None)
    int8_anchor = next((r["total_latency_s"] for r in rows if r["engine"] == "faster-whisper-int8"), None)
    for row in rows:
        row["speedup_vs_transformers"] = baseline / row["total_latency_s"] if baseline else None
        row["speedup_vs_faster_whisper_int8"] = int8_anchor / row["total_latency_s"] if int8_anchor else None
    totals = {r["engine"]: r["total_latency_s"] for r in rows}
    word_cost = {name: totals[f"{name}+words"] / totals[name] - 1 for name in totals if f"{name}+words" in totals}
    return {"benchmark": "short_form", "device": "cpu", "threads": args.threads,
            "model": args.model, "files": len(args.audio), "runs": args.runs, "initial_prompt": args.initial_prompt,
            "num_beams": args.num_beams, "word_timestamps": args.word_timestamps, "word_timestamps_cost": word_cost,
            "versions": versions(), "results": rows}  # fmt: skip


def main() -> None:
    import json

    args = parse_args()
    # Every engine gets the same thread count, told explicitly.
    args.threads = args.threads or torch.get_num_threads()
    if args.child:
        print(json.dumps(child(args)))
        return
    report = run(args)
    print(f"{report['files']} files, {args.runs} timed runs each (median), CPU (float32 unless the engine names a mode), "
          f"{args.threads} threads, model {Path(args.model).name}, initial prompt {args.initial_prompt!r}, "
          f"{args.num_beams} beam(s)" + (", timestamps on" if args.word_timestamps else ""))  # fmt: skip
    print(f"{'engine':<24}{'median s':>10}{'total s':>10}{'RTF':>8}{'tok/s':>8}{'peak MiB':>10}{'load s':>8}{'first s':>9}{'vs HF':>8}{'vs fw-int8':>11}")
    for r in report["results"]:
        speedup = f"{r['speedup_vs_transformers']:.2f}x" if r["speedup_vs_transformers"] else "-"
        vs_int8 = f"{r['speedup_vs_faster_whisper_int8']:.2f}x" if r["speedup_vs_faster_whisper_int8"] else "-"
        print(f"{r['engine']:<24}{r['median_latency_s']:>10.3f}{r['total_latency_s']:>10.2f}{r['rtf']:>8.3f}"
              f"{r['tokens_per_s']:>8.1f}{r['peak_rss_mib']:>10.0f}{r['load_s']:>8.2f}{r['first_call_s']:>9.2f}{speedup:>8}{vs_int8:>11}")  # fmt: skip
    for name, cost in report["word_timestamps_cost"].items():
        print(f"word timestamps cost {name}: {cost:+.1%} over the same decoding without them")
    emit(report, args.json)


if __name__ == "__main__":
    main()
