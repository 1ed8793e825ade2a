"""Where a model runs and in what precision: a device that works, and a dtype this device computes well.

The default (no dtype given) is the GPU in float16 when torch sees one, else the CPU in float32: the parity
reference. dtype "auto" (faster-whisper's word) is the fastest precision that keeps accuracy: float16 on a GPU; on
the CPU bfloat16 where oneDNN computes it natively, else int8 weights. A device that cannot be used, or half
precision on a CPU without native half arithmetic, is refused in one short line.
"""

from dataclasses import dataclass

import torch

from .errors import DistilWhisperError, first_line

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}  # fmt: skip
INT8 = "int8"  # the CPU's int8 mode: every linear layer's weights and activations int8 (weights.Int8Linear)
AUTO = "auto"
PRECISIONS = [*DTYPES, INT8, AUTO]  # what `dtype` may name


# The devices Whisper runs on, for messages: torch's own list holds all 20 types it knows.
DEVICE_CHOICES = "choose auto, cpu, cuda or cuda:N"


def usable_device(device: str | torch.device | None) -> torch.device:
    """`device` as a torch.device, once a tensor can be made there; "auto" (faster-whisper's word) or None: CUDA
    when torch sees a GPU, else the CPU. A device that cannot be used is refused in one short line: torch would
    fail mid-load, and its own words list every device type it knows, or, for a backend this build lacks (mps
    on Linux), run to 1,500 characters."""
    if device is None or device in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise DistilWhisperError(f"unknown device '{device}': {DEVICE_CHOICES}") from None
    if device.type == "meta":  # tensors without data: the checks on the weights would fail in torch's words
        raise DistilWhisperError(f"device 'meta' holds no data: {DEVICE_CHOICES}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DistilWhisperError(f"device '{device}' is not usable here: torch sees no CUDA GPU")
    try:
        torch.empty(0, device=device)  # the one check every backend answers: cuda:3 on one GPU, mps without Metal...
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, NotImplementedError... by backend
        # CUDA's first line says what is wrong (an invalid ordinal, a busy GPU); other backends' is a page.
        reason = first_line(e) if device.type == "cuda" else DEVICE_CHOICES
        raise DistilWhisperError(f"device '{device}' is not usable here: {reason}") from None
    return device


def resolve_device_dtype(device: str | torch.device | None, dtype: str | torch.dtype | None) -> tuple[torch.device, torch.dtype]:
    """Defaults ("auto"): the GPU in float16 when there is one, else the CPU in float32."""
    device = usable_device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        if dtype not in DTYPES:
            raise DistilWhisperError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    elif dtype not in DTYPES.values():  # an integer, complex or float8 dtype, or not a dtype at all
        raise DistilWhisperError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16 (or their names), got {dtype!r}")
    if device.type == "cpu" and dtype in HALF_PROBES and not cpu_has_half_arithmetic(dtype):
        # As faster-whisper does: refuse rather than run 15-60x slower than float32 (measured on AVX2).
        raise DistilWhisperError(
            f"this CPU has no native {str(dtype).removeprefix('torch.')} matrix arithmetic (it would run many times "
            "slower than float32): use float32 on the CPU"
        )
    return device, dtype


# oneDNN's own probes for the instructions (AVX512-BF16/FP16, AMX) that make half precision fast on a CPU.
HALF_PROBES = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}


def cpu_has_half_arithmetic(dtype: torch.dtype) -> bool:
    try:
        return bool(getattr(torch.ops.mkldnn, HALF_PROBES[dtype])())
    except (AttributeError, RuntimeError):  # a torch without the probe: assume the slow path
        return False


@dataclass(frozen=True)
class Precision:
    """What a model computes in: `dtype` for activations, caches and every weight that is not int8."""

    device: torch.device
    dtype: torch.dtype
    int8_weights: bool = False  # the linear layers hold int8 weights (the CPU only)

    @property
    def name(self) -> str:
        return INT8 if self.int8_weights else str(self.dtype).removeprefix("torch.")


def resolve_precision(device: str | torch.device | None, dtype: str | torch.dtype | None, compile: bool = False) -> Precision:
    """`device` and `dtype` (a float dtype or its name, "int8", "auto" or None) as a Precision that works here.

    "auto" on the CPU: int8, the fastest mode measured (on AVX2 and on AVX512-BF16 CPUs alike, bfloat16's matrix
    products there being slower than int8's); where int8 cannot run (no int8 kernels in this torch, or `compile`,
    which cannot trace its packed weights) bfloat16 if the CPU computes it natively, else float32."""
    if dtype not in (INT8, AUTO):
        return Precision(*resolve_device_dtype(device, dtype))
    device = usable_device(device)
    if dtype == AUTO and device.type != "cpu":
        return Precision(device, torch.float16)
    if dtype == AUTO and (compile or not has_int8_kernels()):
        return Precision(device, torch.bfloat16 if cpu_has_half_arithmetic(torch.bfloat16) else torch.float32)
    if device.type != "cpu":
        raise DistilWhisperError(f"int8 weights run on the CPU (torch's int8 kernels), not {device}: use float16 there")
    if not has_int8_kernels():
        raise DistilWhisperError("this torch build has no int8 CPU kernels: use float32")
    if compile:
        raise DistilWhisperError("torch.compile cannot trace int8 weights: compile float32 or bfloat16, or leave int8 uncompiled")
    return Precision(device, torch.float32, int8_weights=True)


def has_int8_kernels() -> bool:
    return torch.backends.quantized.engine != "none"
