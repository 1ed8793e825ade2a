"""One command for the day a GPU is lent: parity on the device, then every engine timed on the same weights.

    python bench/gpu.py                                  # CUDA: full-size random checkpoints, ~8 min on an H100
    python bench/gpu.py --small                          # the same code on the CPU with tiny dims, ~2-4 min
    python bench/gpu.py --device cpu --model ../shared/models/whisper-base --audio ../shared/audio/short/*.wav

Runs from the repository root without installing distilwhisper (it imports the tree beside it); needs torch
and transformers, and faster-whisper only for its CPU row. The units are other scripts' functions: parity.py's
device_parity, steps.py's time_system, long_form.py's engines and speculative.py's tables. With no `--model` it draws random checkpoints
(distil-large-v2 and whisper-large-v2 dims, or tiny ones with `--small`) from a seed into the HF layout, so
we and transformers load the same files. Only the long-form unit needs a tokenizer's files (--tokenizer):
a GPU machine has none, so copy them there beside the tree (see bench/RESULTS.md, "GPU").

1. Parity: fp32 greedy tokens against transformers' generate (TF32 off), then the run dtype (fp16 on CUDA):
   identical, or the agreement and, at each first difference, the fp32 logit margin between the two choices.
2. Timing, one process, same weights and samples, equal work (the end token suppressed until --tokens are
   generated): transformers eager (SDPA), transformers static cache + torch.compile, ours eager, ours
   compiled, faster-whisper on the CPU. Per system: encoder ms per 30 s window, decoder µs per step,
   end-to-end latency, audio s per s, peak memory, ratios; the roofline of the decoder step (bytes it must
   read / step time against measured copy bandwidth) and of the encoder (FLOPs / time against measured
   matmul rate).

Writes OUT/gpu.md and OUT/gpu.json after every measured unit, so a run cut short keeps what it measured;
stops starting new units past --budget-s. Then, as time allows: for a checkpoint of at most 2 decoder layers
(distil-large-v2), chunked long-form at batch 16 (the transformers ASR pipeline against our transcribe, eager
and compiled, on 320 s of synthetic audio, equal work); for one with more (large-v2), speculative decoding with a 2-layer
student of it as the draft (bench/speculative.py's cost and controlled-acceptance tables, batch 1 and 4).
"""

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import DIMS, OUT, PROMPT, SHARED, Clock, PeakGpuMemory, with_tokenizer
from parity import device_parity
from roofline import measure_ceilings
from steps import SYSTEMS, add_ratios, our_rules, release, time_system

from distilwhisper.audio import N_SAMPLES, log_mel_spectrogram
from distilwhisper.errors import first_line
from distilwhisper.weights import load_dims, load_whisper

# Random weights with logits spread wide enough that fp32 argmax has no near-ties, yet fp16 activations
# stay far from overflow through 32 layers.
INIT_STD = 0.05
LONG_FORM_SYSTEMS = ["transformers pipeline", "ours eager", "ours compiled"]
LONG_FORM_SECONDS, LONG_FORM_BATCH = 320.0, 16  # 15 s chunks every 10 s: 32 chunks, two full batches
# Where the long-form unit looks for tokenizer files when --tokenizer is not given: the base fixture beside the
# repository, else a folder that travels to a GPU machine when carried (bench/out/ is ignored by git).
DEFAULT_TOKENIZERS = [SHARED / "models" / "whisper-base", OUT / "tokenizer"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="timing dtype (default: float16 on CUDA, float32 on the CPU)")
    parser.add_argument("--dims", nargs="+", default=None, choices=sorted(DIMS), help="random checkpoints to draw")
    parser.add_argument("--model", default=None, help="an existing HF checkpoint folder instead of random ones")
    parser.add_argument("--audio", nargs="*", default=None, help="audio files to time (default: seeded noise)")
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="default: 1 16 (--small: 1 4)")
    parser.add_argument("--tokens", type=int, default=None, help="tokens each sequence generates, the end token "
                        "suppressed until then: equal work (default: 128; --small: 16)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs after one warm-up, median kept (default: 3; --small: 2)")
    parser.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS)
    parser.add_argument("--budget-s", type=float, default=480, help="start no new unit after this many seconds")
    parser.add_argument("--small", action="store_true", help="tiny dims, few tokens: the whole path on the CPU")
    parser.add_argument("--tokenizer", default=next((str(p) for p in DEFAULT_TOKENIZERS if (p / "tokenizer.json").exists()), None),
                        help="a folder with a Whisper tokenizer's files, for the long-form unit (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT / "gpu"))
    args = parser.parse_args()
    small = args.small
    args.dims = args.dims or (["tiny-2dec"] if small else ["distil-large-v2", "large-v2"])
    args.batches = args.batches or ([1, 4] if small else [1, 16])
    args.tokens, args.runs = args.tokens or (16 if small else 128), args.runs or (2 if small else 3)
    args.dtype = getattr(torch, args.dtype) if args.dtype else torch.float16 if args.device.startswith("cuda") else torch.float32
    return args


def error_line(error: Exception) -> str:
    """A unit that failed, in one line: the exception's type and its message's first line."""
    return f"{type(error).__name__}: {first_line(error)}"


def long_form(path: Path, args, device: torch.device, clock: Clock, workdir: Path) -> list[dict]:
    """Chunked long-form at batch 16, from the samples to the text, on one synthetic noise file of LONG_FORM_SECONDS
    (bench/long_form.py's): the transformers ASR pipeline (15 s chunks, its own feature extractor) against our
    `transcribe` (15 s chunks, log-mel on the device), eager and compiled, each loaded in this process, called
    once (compiling), then timed. Equal work: in a copy of the checkpoint whose generation config suppresses
    every special token, the end token included, every chunk decodes --tokens tokens on both sides."""
    from long_form import engine, synthetic_wav

    from distilwhisper.audio import load_audio

    if args.tokenizer is None:
        return [{"system": "all", "error": "no tokenizer files: pass --tokenizer, or copy a Whisper checkpoint's "
                 f"tokenizer files into {DEFAULT_TOKENIZERS[-1]} (and carry it to the GPU machine)"}]  # fmt: skip
    folder = with_tokenizer(path, Path(args.tokenizer), workdir / f"{path.name}-long-form")
    # The decoded samples, not the file: the pipeline would need an ffmpeg binary, which a GPU machine may lack.
    audio = load_audio(synthetic_wav(LONG_FORM_SECONDS, args.seed))
    dtype = str(args.dtype).removeprefix("torch.")
    rows = []
    for system in LONG_FORM_SYSTEMS:
        peak = PeakGpuMemory(device)
        try:
            start = time.perf_counter()
            run = engine("transformers" if system == "transformers pipeline" else "distilwhisper", str(folder), str(device),
                         dtype, LONG_FORM_BATCH, args.tokens, compile=system == "ours compiled")  # fmt: skip
            load_s = time.perf_counter() - start
            start = time.perf_counter()
            text = run(audio)
            first_call_s = time.perf_counter() - start
            latency = clock.time(lambda: run(audio), args.runs)
            rows.append({"system": system, "batch": LONG_FORM_BATCH, "audio_s": LONG_FORM_SECONDS, "load_s": load_s,
                         "first_call_s": first_call_s, "latency_s": latency, "audio_s_per_s": LONG_FORM_SECONDS / latency,
                         "peak_gpu_mib": peak.mib(), "words": len(text.split()), "text": text})  # fmt: skip
        except Exception as e:  # noqa: BLE001 - one system failing must not lose the others' numbers
            rows.append({"system": system, "error": error_line(e)})
        run = None  # this system's model, freed before the next one's peak memory is measured
        release(device)
    pipeline = next((r for r in rows if r["system"] == "transformers pipeline" and "latency_s" in r), None)
    for r in rows:
        if pipeline and "latency_s" in r:
            r["speedup_vs_pipeline"] = pipeline["latency_s"] / r["latency_s"]
            r["same_text_as_pipeline"] = r["text"] == pipeline["text"]
    return rows


def speculative(path: Path, args, device: torch.device) -> dict:
    """bench/speculative.py's two tables with this checkpoint as the main model and two of its decoder layers
    (first and last) as the draft: for large-v2, a distil-large-v2-sized student over the same encoder.
    Costs of a draft step and of verify passes; full decodes (end token suppressed) at controlled hit rates,
    each checked equal to plain greedy; batch 1 and 4, eager steps."""
    from speculative import controlled_table, cost_table, student_of

    model = load_whisper(path, dtype=args.dtype, device=device)
    draft = student_of(model)
    mel = log_mel_spectrogram(noise(4, args.seed + 3).to(device), model.dims.n_mels).to(args.dtype)
    with torch.inference_mode():
        features = model.encoder(mel)
    options = argparse.Namespace(batches=[1, 4], ks=[1, 4] if args.small else [1, 2, 4, 8, 16],
                                 rates=[0.9] if args.small else [0.7, 0.9, 0.95],
                                 max_new_tokens=min(args.tokens, 64), runs=args.runs, seed=args.seed)  # fmt: skip
    report = {
        "cost": cost_table(model, draft, lambda batch: features[:batch], options, device),
        "controlled": controlled_table(model, draft, lambda batch: features[:batch], our_rules(path, True), options, device),
    }
    model = draft = features = None  # freed before release() empties the CUDA cache
    release(device)
    return report


def noise(batch: int, seed: int) -> torch.Tensor:
    """Seeded speech-level noise, 30 s per row: random weights make any input as good as speech."""
    return 0.1 * torch.randn(batch, N_SAMPLES, generator=torch.Generator().manual_seed(seed))


def audio_batch(files: list[str], batch: int) -> torch.Tensor:
    from distilwhisper.audio import load_audio, pad_or_trim

    return torch.stack([pad_or_trim(torch.from_numpy(load_audio(files[i % len(files)]))) for i in range(batch)])


def checkpoints(args, device: torch.device, workdir: Path):
    """(name, folder) pairs: the given checkpoint, or random ones drawn on the device and saved in fp16 on
    CUDA (half the bytes to write; fp32 parity loads both sides from the same fp16-representable weights)."""
    from oracle import save_random_whisper

    if args.model:
        yield Path(args.model).name, Path(args.model)
        return
    for name in args.dims:
        start = time.perf_counter()
        folder = save_random_whisper(workdir / name, args.seed, device=str(device), init_std=INIT_STD,
                                     dtype=torch.float16 if device.type == "cuda" else None, **DIMS[name])  # fmt: skip
        release(device)
        print(f"{name}: drawn and saved in {time.perf_counter() - start:.1f} s", flush=True)
        yield name, folder


def same_tokens(compared: dict | None) -> str:
    return "-" if not compared else "yes" if all(compared.values()) else "NO: " + ", ".join(k for k, v in compared.items() if not v)


def markdown(report: dict) -> str:
    head = ("| model | batch | system | encoder ms / window | decoder µs / step | latency s | audio s / s | "
            "peak GPU MiB | decoder GB/s (of copy) | encoder TFLOP/s (of matmul) | first call s | vs transformers eager | "
            "same tokens as the others |")
    lines = [f"# bench/gpu.py — {report['device']} {report['dtype']}, {report['date']}", "",
             f"Ceilings: copy {report['ceilings']['copy_GBps']:.0f} GB/s, matmul {report['ceilings']['matmul_TFLOPs']:.2f} "
             f"TFLOP/s ({report['ceilings']['matmul_dtype']}). {report['tokens']} tokens per row (end token suppressed).",
             "", "## Parity", ""]  # fmt: skip
    for model, by_dtype in report["parity"].items():
        for dtype, p in by_dtype.items():
            margins = ", ".join(f"row {d['row']} @ {d['position']}: {d['margin']:.3g}" for d in p["first_differences"])
            lines.append(f"- {model} {dtype}: {'identical' if p['identical'] else 'differs'}; rows identical "
                         f"{p['rows_identical']:.0%}, agreeing prefix {p['agreeing_prefix']:.1%}"
                         + (f"; fp32 margins at first differences: {margins}" if margins else ""))  # fmt: skip
    lines += ["", "## Timing", "", head, "|" + " --- |" * (head.count("|") - 1)]
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for r in report["timing"]:
        if "error" in r or "skipped" in r:
            lines.append(f"| {r['model']} | {r['batch']} | {r['system']} | {r.get('error') or r['skipped']} |")
            continue
        roof = r.get("roofline", {})
        bw = f"{roof['decoder_GBps']:.1f} ({roof['decoder_fraction_of_copy_bw']:.0%})" if roof else "-"
        fl = f"{roof['encoder_TFLOPs']:.2f} ({roof['encoder_fraction_of_matmul']:.0%})" if roof else "-"
        vs = r.get("speedup_vs", {}).get("transformers eager")
        lines.append(f"| {r['model']} | {r['batch']} | {r['system']} | {fmt(r['encoder_ms_per_window'], '.1f')} | "
                     f"{fmt(r['decoder_us_per_step'], '.0f')} | {r['latency_s']:.3f} | {r['audio_s_per_s']:.1f} | "
                     f"{fmt(r['peak_gpu_mib'], '.0f')} | {bw} | {fl} | {r['first_call_s']:.1f} | {fmt(vs, '.2f')} | "
                     f"{same_tokens(r.get('same_tokens_as'))} |")  # fmt: skip
    for model, rows in report.get("long_form", {}).items():
        lines += ["", f"## Long-form: {model}, {LONG_FORM_SECONDS:.0f} s of synthetic audio, 15 s chunks, batch {LONG_FORM_BATCH}", "",
                  "| system | latency s | audio s / s | peak GPU MiB | first call s | vs the pipeline | same text as the pipeline |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['system']} | {r['error']} |")
                continue
            same = r.get("same_text_as_pipeline")
            lines.append(f"| {r['system']} | {r['latency_s']:.2f} | {r['audio_s_per_s']:.1f} | {fmt(r['peak_gpu_mib'], '.0f')} | "
                         f"{r['first_call_s']:.1f} | {fmt(r.get('speedup_vs_pipeline'), '.2f')} | "
                         f"{'-' if same is None else 'yes' if same else 'no'} |")  # fmt: skip
    for model, tables in report.get("speculative", {}).items():
        lines += ["", f"## Speculative decoding: {model} main, its layers 0 and -1 as the draft (eager)", ""]
        if "error" in tables:
            lines.append(f"- {tables['error']}")
            continue
        lines += ["| batch | k | greedy step ms | draft step ms | verify ms | verify / step |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {c['batch']} | {c['k']} | {c['greedy_step_ms']:.2f} | {c['draft_step_ms']:.2f} | {c['verify_ms']:.2f} | "
                  f"{c['verify_over_step']:.2f} |" for c in tables["cost"]]  # fmt: skip
        lines += ["", "| batch | hit rate | k | adaptive | acceptance | greedy s | speculative s | speed-up |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        lines += [f"| {c['batch']} | {c['hit_rate']} | {c['k']} | {c['adaptive']} | {c['acceptance']:.2f} | {c['greedy_s']:.3f} | "
                  f"{c['speculative_s']:.3f} | {c['speedup']:.2f}× |" for c in tables["controlled"]]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    import transformers

    transformers.logging.set_verbosity_error()  # its per-call notes on max_length would bury the progress lines
    started = time.perf_counter()
    device = torch.device(args.device)
    # fp32 means fp32: no TF32 in matmuls or convolutions, on either side.
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    clock = Clock(device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "gpu", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "dtype": str(args.dtype), "tokens": args.tokens, "runs": args.runs, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(sys.argv), "torch": torch.__version__, "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
        "ceilings": measure_ceilings(device, args.dtype, clock), "parity": {}, "timing": [],
    }  # fmt: skip

    def save() -> None:
        add_ratios(report["timing"])
        (out / "gpu.json").write_text(json.dumps(report, indent=1) + "\n")
        (out / "gpu.md").write_text(markdown(report))

    with tempfile.TemporaryDirectory() as workdir:
        for name, path in checkpoints(args, device, Path(workdir)):
            report["parity"][name] = device_parity(path, device, args.dtype, noise(4, args.seed + 1), min(args.tokens, 48),
                                                   PROMPT, our_rules(path, False))  # fmt: skip
            release(device)
            save()
            for batch in args.batches:
                samples = audio_batch(args.audio, batch) if args.audio else noise(batch, args.seed + 2)
                for system in args.systems:
                    unit = {"model": name, "batch": batch, "system": system}
                    if system == "faster-whisper" and (device.type != "cpu" or not args.model or batch != 1):
                        continue  # CPU only, a real checkpoint (it needs the tokenizer files), one input at a time
                    if time.perf_counter() - started > args.budget_s:
                        report["timing"].append(unit | {"skipped": "time budget spent"})
                        continue
                    try:
                        report["timing"].append(unit | time_system(system, path, device, args.dtype, samples, args, clock, report["ceilings"]))
                    except Exception as e:  # noqa: BLE001 - one system failing must not lose the others' numbers
                        report["timing"].append(unit | {"error": error_line(e)})
                        release(device)
                    save()
                    print(f"{name} batch {batch} {system}: done at {time.perf_counter() - started:.0f} s", flush=True)
            # Long-form for the 2-layer decoders (distil-large-v2: the product's model), speculation for the others.
            if load_dims(path).decoder_layers <= 2 and time.perf_counter() - started < args.budget_s:
                report.setdefault("long_form", {})[name] = long_form(path, args, device, clock, Path(workdir))
                save()
                print(f"{name} long-form: done at {time.perf_counter() - started:.0f} s", flush=True)
            # A 2-layer decoder drafting for itself would say nothing; --small has only those.
            if (load_dims(path).decoder_layers > 2 or args.small) and time.perf_counter() - started < args.budget_s:
                try:
                    report.setdefault("speculative", {})[name] = speculative(path, args, device)
                except Exception as e:  # noqa: BLE001 - keep what was measured
                    report.setdefault("speculative", {})[name] = {"error": error_line(e)}
                    release(device)
                save()
                print(f"{name} speculative: done at {time.perf_counter() - started:.0f} s", flush=True)
    save()
    print(markdown(report))


if __name__ == "__main__":
    main()
