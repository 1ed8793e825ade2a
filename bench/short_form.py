"""Short-form latency: distilwhisper vs transformers vs faster-whisper, same weights, same audio, one run.

Each engine runs in its own child process (so its peak memory is its own), on the same decoded 16 kHz
samples, with the same thread count, greedy, English, no timestamps. Per file it takes the median of
--runs timed calls after one warm-up call; a call covers features, encoder, decoding and detokenising.

    python bench/short_form.py                        # base fixture, every file in ../shared/audio/short
    python bench/short_form.py --json bench/out/short.json
    python bench/short_form.py --initial-prompt "Dashwood, Norland."  # every engine reads the same previous text

Prints a table and, last, one JSON line. faster-whisper needs a CTranslate2 copy of the checkpoint; it is
converted once into bench/out/ (ct2-transformers-converter) when faster-whisper is installed.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# distilwhisper-compiled: load_model(..., compile=True); its first call per file shape compiles (see "first s").
ENGINES = ["distilwhisper", "distilwhisper-compiled", "transformers", "faster-whisper"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "whisper-base"))
    parser.add_argument("--audio", nargs="+", default=sorted(map(str, (SHARED / "audio" / "short").glob("*.wav"))))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch / CTranslate2 threads (default: all cores)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--initial-prompt", default=None, help="previous text for every engine (default: none)")
    parser.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    parser.add_argument("--json", default=None, help="also write the JSON here")
    parser.add_argument("--child", default=None, choices=ENGINES, help=argparse.SUPPRESS)
    return parser.parse_args()


def distilwhisper_engine(args, compile: bool = False):
    import distilwhisper

    model = distilwhisper.load_model(args.model, device="cpu", dtype="float32", compile=compile)

    def run(samples):
        return len(model.transcribe(samples, max_new_tokens=args.max_new_tokens, initial_prompt=args.initial_prompt).tokens)

    return run


def transformers_engine(args):
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(args.model)
    model = WhisperForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32).eval()
    prompt = {} if args.initial_prompt is None else {"prompt_ids": processor.get_prompt_ids(args.initial_prompt, return_tensors="pt")}

    @torch.inference_mode()
    def run(samples):
        features = processor(samples, sampling_rate=16000, return_tensors="pt").input_features
        tokens = model.generate(features, language="en", task="transcribe", max_new_tokens=args.max_new_tokens, **prompt)
        processor.batch_decode(tokens, skip_special_tokens=True)
        return int((tokens[0] < processor.tokenizer.eos_token_id).sum())

    return run


def faster_whisper_engine(args, **options):
    """`options` add to or override the transcribe() arguments (bench/gpu.py suppresses the end token)."""
    from faster_whisper import WhisperModel

    ct2_dir = ROOT / "bench" / "out" / f"ct2-{Path(args.model).name}"
    if not (ct2_dir / "model.bin").exists():
        subprocess.run([str(Path(sys.executable).parent / "ct2-transformers-converter"), "--model", args.model, "--output_dir", str(ct2_dir), "--force",
                        "--copy_files", "tokenizer.json", "preprocessor_config.json"], check=True, capture_output=True)  # fmt: skip
    model = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32", cpu_threads=args.threads)

    def run(samples):
        segments, _ = model.transcribe(samples, **dict(language="en", task="transcribe", beam_size=1, temperature=0.0,
                                       without_timestamps=True, condition_on_previous_text=False,
                                       vad_filter=False, max_new_tokens=args.max_new_tokens,
                                       initial_prompt=args.initial_prompt) | options)  # fmt: skip
        return sum(len(s.tokens) for s in segments)

    return run


def child(args) -> None:
    """Time one engine on every file; print one JSON object."""
    import torch

    from distilwhisper.audio import SAMPLE_RATE, load_audio

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    run = {"distilwhisper": distilwhisper_engine, "distilwhisper-compiled": lambda a: distilwhisper_engine(a, compile=True),
           "transformers": transformers_engine, "faster-whisper": faster_whisper_engine}[args.child](args)  # fmt: skip
    load_s = time.perf_counter() - start
    files, first_call_s = [], None
    for path in args.audio:
        samples = load_audio(path)
        start = time.perf_counter()
        run(samples)  # warm-up
        first_call_s = first_call_s or time.perf_counter() - start  # the first file's: any compilation is in it
        latencies, tokens = [], 0
        for _ in range(args.runs):
            start = time.perf_counter()
            tokens = run(samples)
            latencies.append(time.perf_counter() - start)
        files.append({"file": Path(path).name, "audio_s": len(samples) / SAMPLE_RATE,
                      "latency_s": statistics.median(latencies), "tokens": tokens})  # fmt: skip
    print(json.dumps({"engine": args.child, "load_s": load_s, "first_call_s": first_call_s, "peak_rss_mib": peak_rss_mib(),
                      "files": files}))  # fmt: skip


def summarize(result: dict) -> dict:
    files = result["files"]
    latency = sum(f["latency_s"] for f in files)
    return {
        "engine": result["engine"],
        "median_latency_s": statistics.median(f["latency_s"] for f in files),
        "total_latency_s": latency,
        "rtf": latency / sum(f["audio_s"] for f in files),
        "tokens_per_s": sum(f["tokens"] for f in files) / latency,
        "peak_rss_mib": result["peak_rss_mib"],
        "load_s": result["load_s"],
        "first_call_s": result["first_call_s"],
    }


def main() -> None:
    args = parse_args()
    if args.child:
        return child(args)
    import torch

    # Every engine gets the same thread count, told explicitly: left to itself CTranslate2 takes 4 threads
    # even on a 2-core machine.
    args.threads = args.threads or torch.get_num_threads()
    passthrough = ["--model", args.model, "--runs", str(args.runs), "--max-new-tokens", str(args.max_new_tokens),
                   "--threads", str(args.threads), "--audio", *args.audio]
    passthrough += [] if args.initial_prompt is None else ["--initial-prompt", args.initial_prompt]
    rows = [summarize(result) for engine in args.engines if (result := run_child(__file__, engine, passthrough))]
    baseline = next((r["total_latency_s"] for r in rows if r["engine"] == "transformers"), None)
    for row in rows:
        row["speedup_vs_transformers"] = baseline / row["total_latency_s"] if baseline else None

    print(f"{len(args.audio)} files, {args.runs} timed runs each (median), CPU fp32, "
          f"{args.threads} threads, model {Path(args.model).name}, initial prompt {args.initial_prompt!r}")  # fmt: skip
    header = f"{'engine':<24}{'median s':>10}{'total s':>10}{'RTF':>8}{'tok/s':>8}{'peak MiB':>10}{'load s':>8}{'first s':>9}{'vs HF':>8}"
    print(header)
    for r in rows:
        speedup = f"{r['speedup_vs_transformers']:.2f}x" if r["speedup_vs_transformers"] else "-"
        print(f"{r['engine']:<24}{r['median_latency_s']:>10.3f}{r['total_latency_s']:>10.2f}{r['rtf']:>8.3f}"
              f"{r['tokens_per_s']:>8.1f}{r['peak_rss_mib']:>10.0f}{r['load_s']:>8.2f}{r['first_call_s']:>9.2f}{speedup:>8}")  # fmt: skip
    report = {"benchmark": "short_form", "device": "cpu", "dtype": "float32", "threads": args.threads,
              "model": args.model, "files": len(args.audio), "runs": args.runs, "initial_prompt": args.initial_prompt,
              "versions": versions(), "results": rows}  # fmt: skip
    emit(report, args.json)


# --- shared with long_form.py ---------------------------------------------------------------------------------


def run_child(script: str, engine: str, passthrough: list[str]) -> dict | None:
    """`script --child engine ...` in its own process (so its peak memory is its own): its last stdout line, as JSON;
    None, with the reason on stderr, when it failed."""
    proc = subprocess.run([sys.executable, script, "--child", engine, *passthrough], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"{engine}: failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def versions() -> dict:
    import torch

    found = {"torch": torch.__version__, "python": sys.version.split()[0]}
    for name in ("transformers", "faster_whisper", "ctranslate2"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            pass
    return found


def emit(report: dict, json_path: str | None) -> None:
    """The report as the table's last line, and into `json_path` when given."""
    print(json.dumps(report))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
