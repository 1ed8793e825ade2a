"""The most a device can give, measured, and what a Whisper encoder window and decoder step must do: the roofline
bench/steps.py holds each engine's timings against."""

import torch

from common import Clock


def measure_ceilings(device: torch.device, dtype: torch.dtype, clock: Clock) -> dict:
    """Copy bandwidth (bytes read + written) and matmul rate, measured here, on random data: each the best of
    10 calls, since a ceiling is the most the device gave (a median of a few short calls once caught a 2-core
    VM at a third of its matmul rate, and the encoder then ran at 180% of that "ceiling")."""
    numel = (1 << 28 if device.type == "cuda" else 1 << 26)  # 1 GiB / 256 MiB of fp32
    src, dst = torch.randn(numel, device=device), torch.empty(numel, device=device)
    copy_s = clock.time(lambda: dst.copy_(src), 10, min)
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    mm_s = clock.time(lambda: a @ b, 10, min)
    return {"copy_GBps": 2 * numel * 4 / copy_s / 1e9, "matmul_TFLOPs": 2 * n**3 / mm_s / 1e12, "matmul_dtype": str(dtype)}


def encoder_flops(dims) -> float:
    """Multiply-adds x 2 of one 30 s window: the conv stem, then per layer projections, attention and MLP."""
    frames, ctx, d = 2 * dims.n_audio_ctx, dims.n_audio_ctx, dims.d_model
    stem = 2 * dims.n_mels * 3 * d * frames + 2 * d * 3 * d * ctx
    layer = 4 * 2 * ctx * d * d + 2 * 2 * ctx * ctx * d + 2 * 2 * ctx * d * dims.encoder_ffn
    return stem + dims.encoder_layers * layer


def decoder_step_bytes(dims, element_size: int, batch: int, positions: int) -> int:
    """What one step must read: the decoder weights that act per token (per layer the self-attention's four
    projections, the cross-attention's query and output ones, the MLP; then the vocabulary projection; not
    the cross-attention key/value projections, used once per audio) and the caches' filled keys/values."""
    d = dims.d_model
    weights = dims.decoder_layers * (6 * d * d + 2 * d * dims.decoder_ffn) + dims.n_vocab * d
    caches = batch * dims.decoder_layers * 2 * (dims.n_audio_ctx + positions) * d
    return (weights + caches) * element_size
