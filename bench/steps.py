"""Every engine's encoder window and decoder step on the same weights and samples, against the roofline: one
system at a time, loaded in this process, one first call (compilation), then timed calls.

Equal work: the end token is suppressed until every row has generated `tokens` tokens. The encoder column includes
the log-mel features (both are per-window work); the decoder column is the rest of the latency over the tokens.
bench/gpu.py runs this for each checkpoint and batch; it also runs on the CPU (`bench/gpu.py --device cpu`).
"""

import argparse
import gc
import time
from pathlib import Path

import torch

from common import EOT, PROMPT, PeakGpuMemory, faster_whisper, transformers_generate
from roofline import decoder_step_bytes, encoder_flops

from distilwhisper.audio import N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram
from distilwhisper.compiled import compiled_steps, eager_steps
from distilwhisper.decoding import Decoding, SuppressAtBegin, SuppressTokens, greedy_decode
from distilwhisper.weights import load_dims, load_generation_defaults, load_whisper

SYSTEMS = ["transformers eager", "transformers static+compile", "ours eager", "ours compiled", "faster-whisper"]


def our_rules(path: Path, equal_work: bool) -> tuple:
    """The checkpoint's suppression rules; with `equal_work`, the end token suppressed too."""
    defaults = load_generation_defaults(path)
    rules = (SuppressTokens(defaults.suppress_tokens), SuppressAtBegin(defaults.begin_suppress_tokens))
    return (*rules, SuppressTokens([EOT])) if equal_work else rules


def release(device: torch.device) -> None:
    # Compiled systems' graphs (and, on CUDA, their graph memory pools) live in dynamo's caches until reset.
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def our_system(path: Path, device: torch.device, dtype: torch.dtype, compiled: bool, tokens: int):
    """`run(samples)` -> token rows, `encode(samples)` -> features: the whole path, log-mel on the device."""
    model = load_whisper(path, dtype=dtype, device=device)
    steps = compiled_steps(model) if compiled else eager_steps(model)
    decoding = Decoding(EOT, tokens, our_rules(path, True))

    def features(samples):
        return log_mel_spectrogram(samples.to(device), model.dims.n_mels).to(dtype)

    @torch.inference_mode()
    def run(samples):
        model.decoder.setup_caches(steps.encoder(features(samples)))
        return [r.tokens for r in greedy_decode(model, [PROMPT] * len(samples), decoding, steps.decoder)]

    @torch.inference_mode()
    def encode(samples):
        return steps.encoder(features(samples))

    return run, encode


def faster_whisper_system(path: Path, tokens: int):
    # faster-whisper 1.2.1 (CTranslate2 4.8.5) stops at (prompt + max_new_tokens) / 2 tokens, measured: 66 for
    # max_new_tokens=128 after the 4-token prompt. Ask for what makes `tokens`, and check that it did.
    transcribe = faster_whisper(str(path), torch.get_num_threads(), 2 * tokens - 4, suppress_tokens=[-1, EOT])  # -1: its own list

    def run(samples):
        counts = [len(row) for row in transcribe(samples)]
        if counts != [tokens] * len(samples):
            raise RuntimeError(f"faster-whisper decoded {counts} tokens, not {tokens}: not the same work")
        return [[0] * count for count in counts]  # token counts: its text is its own

    return run, None


def system(name: str, path: Path, device: torch.device, dtype: torch.dtype, tokens: int):
    if name.startswith("ours"):
        return our_system(path, device, dtype, name == "ours compiled", tokens)
    if name.startswith("transformers"):
        return transformers_generate(str(path), str(device), dtype, tokens, static="static" in name, min_new_tokens=tokens)
    return faster_whisper_system(path, tokens)


def time_system(name: str, path: Path, device: torch.device, dtype: torch.dtype, samples: torch.Tensor,
                args: argparse.Namespace, clock, ceilings: dict) -> dict:  # fmt: skip
    """Load, one first call (compilation), then timed calls; the roofline of what was measured."""
    peak = PeakGpuMemory(device)
    start = time.perf_counter()
    run, encode = system(name, path, device, dtype, args.tokens)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    rows = run(samples)  # the first call compiles, where there is anything to compile
    first_call_s = time.perf_counter() - start
    latency = clock.time(lambda: run(samples), args.runs)
    encoder_s = clock.time(lambda: encode(samples), args.runs) if encode else None
    batch, audio_s = len(samples), len(samples) * N_SAMPLES / SAMPLE_RATE
    result = {
        "system": name, "batch": batch, "tokens_per_row": [len(r) for r in rows], "load_s": load_s,
        "first_call_s": first_call_s, "latency_s": latency, "audio_s_per_s": audio_s / latency,
        "encoder_ms_per_window": encoder_s * 1e3 / batch if encoder_s else None,
        "decoder_us_per_step": (latency - encoder_s) * 1e6 / args.tokens if encoder_s else None,
        "peak_gpu_mib": peak.mib(),
        "rows": rows if name != "faster-whisper" else None,
    }  # fmt: skip
    if encoder_s:  # the same weights for every system: the same bytes and FLOPs
        dims = load_dims(path)
        step_bytes = decoder_step_bytes(dims, torch.finfo(dtype).bits // 8, batch, len(PROMPT) + args.tokens // 2)
        step_s = result["decoder_us_per_step"] / 1e6
        result["roofline"] = {
            "decoder_bytes_per_step": step_bytes,
            "decoder_floor_us": step_bytes / (ceilings["copy_GBps"] * 1e9) * 1e6,
            "decoder_GBps": step_bytes / step_s / 1e9,
            "decoder_fraction_of_copy_bw": step_bytes / step_s / 1e9 / ceilings["copy_GBps"],
            "encoder_TFLOPs": encoder_flops(dims) * batch / encoder_s / 1e12,
            "encoder_fraction_of_matmul": encoder_flops(dims) * batch / encoder_s / 1e12 / ceilings["matmul_TFLOPs"],
        }
    run = encode = None  # this system freed before release() empties the CUDA cache
    release(device)
    return result


def add_ratios(results: list[dict]) -> None:
    """Each system's latency against each other's at the same batch ('vs X' > 1: faster than X), and whether
    its tokens are those of every other system (equal work: all of them decode the same N tokens)."""
    for r in results:
        peers = [p for p in results if p["model"] == r["model"] and p["batch"] == r["batch"] and "latency_s" in p]
        if "latency_s" in r:
            r["speedup_vs"] = {p["system"]: p["latency_s"] / r["latency_s"] for p in peers if p is not r}
            r["same_tokens_as"] = {p["system"]: p["rows"] == r["rows"] for p in peers if p is not r and p["rows"] and r["rows"]}
