"""Long-form throughput: distilwhisper vs the transformers ASR pipeline (chunk_length_s=15), same weights, same audio.

Each engine and batch size runs in its own child process (so its peak memory is its own), with the same thread
count, greedy (num_beams=1), English, max_new_tokens=128 per chunk, from the audio file to the text: ours
streams the file (`model.transcribe(path)`), the pipeline reads it whole (its ffmpeg_read). Each file is timed
--runs times (median) after one warm-up call on its first 35 s.

    python bench/long_form.py                                  # CPU fp32, batch 4, base fixture, ../shared/audio/long
    python bench/long_form.py --device cuda --dtype float16 --batch-size 16 32 --random-dims distil-large-v2

--random-dims builds a full-size checkpoint with random weights from --seed in the Hugging Face layout (with
--model's tokenizer and feature extractor files), in bench/out/, so a GPU machine with no network can run it;
random weights decode to nonsense, but the same nonsense on both sides. --synthetic SECONDS benchmarks a
generated noise file instead of real speech. Prints a table and, last, one JSON line (also --json OUT).
"""

import argparse
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path

from short_form import ROOT, SHARED, emit, peak_rss_mib, run_child, versions

ENGINES = ["distilwhisper", "transformers"]
# Full-size shapes for --random-dims, as the checkpoints' config.json have them.
DIMS = {
    "distil-large-v2": dict(d_model=1280, encoder_layers=32, decoder_layers=2, encoder_attention_heads=20,
                            decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=80),
    "base": dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
                 encoder_ffn_dim=2048, decoder_ffn_dim=2048, num_mel_bins=80),
}  # fmt: skip
TOKENIZER_FILES = ["added_tokens.json", "merges.txt", "normalizer.json", "preprocessor_config.json",
                   "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.json"]  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "whisper-base"),
                        help="checkpoint folder; with --random-dims, where the tokenizer files come from")
    parser.add_argument("--random-dims", default=None, choices=sorted(DIMS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--audio", nargs="+", default=sorted(map(str, (SHARED / "audio" / "long").glob("*.wav"))))
    parser.add_argument("--synthetic", type=float, default=None, metavar="SECONDS", help="a generated file instead")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[4])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    parser.add_argument("--json", default=None, help="also write the JSON here")
    parser.add_argument("--child", default=None, choices=ENGINES, help=argparse.SUPPRESS)
    return parser.parse_args()


def random_checkpoint(name: str, seed: int, tokenizer_dir: str) -> Path:
    """A `name`-shaped Whisper with random weights (transformers' own init, from `seed`), saved once in bench/out/."""
    folder = ROOT / "bench" / "out" / f"random-{name}-seed{seed}"
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    config = WhisperConfig(vocab_size=51865, max_source_positions=1500, max_target_positions=448, **DIMS[name])
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    for file in TOKENIZER_FILES:
        if (Path(tokenizer_dir) / file).exists():
            shutil.copy(Path(tokenizer_dir) / file, folder / file)
    # The real checkpoint's generation settings, with every special token but the end token suppressed: random
    # weights emit them, and the pipeline would read them as timestamps or text.
    generation = GenerationConfig.from_pretrained(tokenizer_dir)
    generation.suppress_tokens = sorted(set(generation.suppress_tokens or []) | set(range(50258, 51865)))
    generation.save_pretrained(folder)
    return folder


def synthetic_wav(seconds: float, seed: int) -> Path:
    """Noise whose loudness changes every half second, 16 kHz 16-bit, in bench/out/."""
    import numpy as np

    path = ROOT / "bench" / "out" / f"synthetic-{seconds:g}s-seed{seed}.wav"
    if not path.exists():
        rng = np.random.default_rng(seed)
        n = int(seconds * 16000)
        envelope = np.repeat(rng.uniform(0.01, 0.5, n // 8000 + 1), 8000)[:n]
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as f:
            f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
            f.writeframes((np.clip(rng.standard_normal(n) * envelope, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def distilwhisper_engine(args, compile: bool = False):
    import distilwhisper

    model = distilwhisper.load_model(args.model, device=args.device, dtype=args.dtype, compile=compile)

    def run(path):
        return model.transcribe(path, language="en", max_new_tokens=args.max_new_tokens, batch_size=args.batch).text

    return run


def transformers_engine(args):
    import torch
    from transformers import pipeline

    pipe = pipeline("automatic-speech-recognition", model=args.model, chunk_length_s=15, batch_size=args.batch,
                    device=args.device, dtype=getattr(torch, args.dtype))  # fmt: skip
    options = {"language": "en", "task": "transcribe", "num_beams": 1, "max_new_tokens": args.max_new_tokens}

    def run(path):
        return pipe(path, generate_kwargs=options)["text"]

    return run


def child(args) -> None:
    """Time one engine at one batch size on every file; print one JSON object."""
    import numpy as np
    import torch

    from distilwhisper.audio import SAMPLE_RATE, audio_duration, stream_audio

    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    start = time.perf_counter()
    run = {"distilwhisper": distilwhisper_engine, "transformers": transformers_engine}[args.child](args)
    load_s = time.perf_counter() - start
    # Warm up on the first 35 s of the first file (two chunks: every code path), read without loading it all.
    with tempfile.TemporaryDirectory() as folder:
        warm_up = Path(folder) / "warm-up.wav"
        head = np.concatenate(list(itertools.islice(stream_audio(args.audio[0]), 4)))[: 35 * SAMPLE_RATE]
        with wave.open(str(warm_up), "wb") as f:
            f.setnchannels(1), f.setsampwidth(2), f.setframerate(SAMPLE_RATE)
            f.writeframes((head * 32767).astype("<i2").tobytes())
        run(str(warm_up))
    files = []
    for path in args.audio:
        seconds = []
        for _ in range(args.runs):
            if cuda:
                torch.cuda.synchronize(args.device)
            start = time.perf_counter()
            text = run(path)
            if cuda:
                torch.cuda.synchronize(args.device)
            seconds.append(time.perf_counter() - start)
        files.append({"file": Path(path).name, "audio_s": audio_duration(path), "wall_s": statistics.median(seconds),
                      "words": len(text.split())})  # fmt: skip
    print(json.dumps({"engine": args.child, "batch_size": args.batch, "load_s": load_s, "peak_rss_mib": peak_rss_mib(),
                      "cuda_max_allocated_mib": torch.cuda.max_memory_allocated(args.device) / 2**20 if cuda else None,
                      "files": files}))  # fmt: skip


def summarize(result: dict) -> dict:
    audio_s, wall_s = sum(f["audio_s"] for f in result["files"]), sum(f["wall_s"] for f in result["files"])
    return {key: result[key] for key in ("engine", "batch_size", "peak_rss_mib", "cuda_max_allocated_mib", "load_s")} | {
        "audio_s": audio_s, "wall_s": wall_s, "audio_s_per_s": audio_s / wall_s, "words": sum(f["words"] for f in result["files"])}


def main() -> None:
    args = parse_args()
    if args.child:
        args.batch = args.batch_size[0]
        return child(args)
    import torch

    args.threads = args.threads or torch.get_num_threads()
    if args.random_dims:
        args.model = str(random_checkpoint(args.random_dims, args.seed, args.model))
    if args.synthetic:
        args.audio = [str(synthetic_wav(args.synthetic, args.seed))]
    rows = []
    for batch in args.batch_size:
        passthrough = ["--model", args.model, "--runs", str(args.runs), "--max-new-tokens", str(args.max_new_tokens),
                       "--threads", str(args.threads), "--device", args.device, "--dtype", args.dtype,
                       "--batch-size", str(batch), "--audio", *args.audio]  # fmt: skip
        rows += [summarize(result) for engine in args.engines if (result := run_child(__file__, engine, passthrough))]
    for row in rows:
        baseline = next((r for r in rows if r["engine"] == "transformers" and r["batch_size"] == row["batch_size"]), None)
        row["speedup_vs_transformers"] = row["audio_s_per_s"] / baseline["audio_s_per_s"] if baseline else None

    print(f"{len(args.audio)} files, {sum(r['audio_s'] for r in rows[:1]):.0f} s of audio, {args.device} {args.dtype}, "
          f"{args.threads} threads, model {Path(args.model).name}, greedy, max_new_tokens {args.max_new_tokens}")  # fmt: skip
    print(f"{'engine':<16}{'batch':>6}{'wall s':>9}{'audio s/s':>11}{'peak RSS MiB':>14}{'CUDA MiB':>10}{'words':>7}{'vs HF':>8}")
    for r in rows:
        speedup = f"{r['speedup_vs_transformers']:.2f}x" if r["speedup_vs_transformers"] else "-"
        cuda_mib = f"{r['cuda_max_allocated_mib']:.0f}" if r["cuda_max_allocated_mib"] is not None else "-"
        print(f"{r['engine']:<16}{r['batch_size']:>6}{r['wall_s']:>9.2f}{r['audio_s_per_s']:>11.1f}{r['peak_rss_mib']:>14.0f}"
              f"{cuda_mib:>10}{r['words']:>7}{speedup:>8}")  # fmt: skip
    emit({"benchmark": "long_form", "device": args.device, "dtype": args.dtype, "threads": args.threads,
          "model": args.model, "random_dims": args.random_dims, "seed": args.seed, "audio": args.audio,
          "runs": args.runs, "max_new_tokens": args.max_new_tokens, "versions": versions(), "results": rows}, args.json)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
