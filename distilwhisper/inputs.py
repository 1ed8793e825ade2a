"""Every form of audio input, checked at the door: paths, an audio file's bytes, samples, dicts as datasets and the
transformers ASR pipeline pass them, and a long file read as a stream.

`open_audio` is the one entry point: it gives 16 kHz float32 samples, or, for a file longer than 30 s, an
AudioStream that long-form transcription reads as it goes. Anything it cannot use is a one-line error naming it.
"""

import itertools
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

import numpy as np
import torch

from .audio import LOUDEST_SAMPLE, N_SAMPLES, AudioStream, audio_duration, decode_audio, load_audio, resample, stream_audio, torch_ready
from .errors import DistilWhisperError, is_whole_number

# a path, an audio file's bytes, 16 kHz samples, {"array" (or "raw"): samples, "sampling_rate": Hz},
# or datasets' undecoded {"bytes": ..., "path": ...}; or an AudioStream (what open_audio gives for a long file)
AudioInput = str | os.PathLike | bytes | bytearray | np.ndarray | torch.Tensor | Mapping[str, Any] | AudioStream


def open_audio(audio: AudioInput, name: str | None = None) -> torch.Tensor | AudioStream:
    """as_waveform, except that a file longer than 30 s is not read whole: it comes back as an AudioStream whose
    blocks are decoded as long-form transcription asks for them (its first 30 s are already read), with the
    duration its header or metadata gives, for progress reports. Anything else is as_waveform's samples.
    """
    if isinstance(audio, AudioStream):
        return audio
    if not isinstance(audio, (str, os.PathLike)):
        return as_waveform(audio, name)
    name = name or str(audio)
    blocks = finite_blocks(stream_audio(audio, name=name), name)
    head, n_samples = [], 0
    for block in blocks:  # up to one sample past 30 s: short or long?
        head.append(block)
        n_samples += len(block)
        if n_samples > N_SAMPLES:
            return AudioStream(name, itertools.chain(head, blocks), audio_duration(audio))
    return torch.from_numpy(np.concatenate(head))  # stream_audio gives at least one sample


def is_short(audio: torch.Tensor | AudioStream) -> TypeGuard[torch.Tensor]:
    """Fits one 30 s window: decoded whole, not in chunks."""
    return isinstance(audio, torch.Tensor) and len(audio) <= N_SAMPLES


def as_waveform(audio: AudioInput, name: str | None = None) -> torch.Tensor:
    """Any audio input as 16 kHz float32 samples of any length; anything else is a clear error.

    A path or an audio file's bytes is decoded; a dict holds samples at any rate, as the transformers ASR
    pipeline and datasets' Audio feature pass them: {"array" (or "raw"): samples, "sampling_rate": Hz};
    a bare array or tensor is 16 kHz samples. `name` stands for an input that is not a path (nor a dict with
    a "path") in messages; by default the input's type.
    """
    if isinstance(audio, (str, os.PathLike)):
        name = str(audio)
        samples = torch.from_numpy(load_audio(audio))
    elif isinstance(audio, (bytes, bytearray)):
        name = name or "bytes input"
        samples = torch.from_numpy(decode_audio(audio, name))
    elif isinstance(audio, Mapping):
        name = str(audio.get("path") or name or "dict input")
        samples = dict_samples(audio, name)
    elif isinstance(audio, (np.ndarray, torch.Tensor)):
        name = name or f"{type(audio).__name__} input"
        samples = mono_samples(audio, name, "1-D float samples at 16 kHz")
    else:
        raise DistilWhisperError(
            f"cannot transcribe {type(audio).__name__} input: pass a path, an audio file's bytes, a numpy array or torch "
            "tensor of 16 kHz samples, or a dict of samples and their 'sampling_rate'"
        )
    if samples.numel() == 0:
        raise DistilWhisperError(f"{name}: the audio is empty")
    peak = float(samples.abs().max())  # NaN if any sample is
    if not math.isfinite(peak):
        raise DistilWhisperError(f"{name}: the audio holds NaN or infinite samples")
    if peak > LOUDEST_SAMPLE:  # the log-mel frontend would refuse the whole batch, not knowing which input
        raise DistilWhisperError(f"{name}: the audio is far too loud (samples up to {peak:.3g}; they belong in [-1, 1])")
    return samples


def list_item_name(item: AudioInput, place: int | None) -> str | None:
    """An item of a list (`place` its index; None: no list) that is no file is named by its place, so that an error
    says which one it is."""
    if place is None or isinstance(item, (str, os.PathLike, AudioStream)):
        return None
    return f"input {place} ({type(item).__name__})"


def finite_blocks(blocks: Iterator[np.ndarray], name: str) -> Iterator[np.ndarray]:
    for block in blocks:
        if not np.isfinite(block).all():  # float WAVs can hold them (every decoder clips the rest to [-1, 1])
            raise DistilWhisperError(f"{name}: the audio holds NaN or infinite samples")
        yield block


def dict_samples(audio: Mapping, name: str) -> torch.Tensor:
    """{"array" or "raw": samples, "sampling_rate": Hz} -> 16 kHz samples; other keys ("path", ...) are ignored.

    Also datasets' undecoded form, `Audio(decode=False)`: {"bytes": the file's bytes or None, "path": its path}.
    """
    if "bytes" in audio and not {"array", "raw"} & audio.keys():
        if isinstance(audio["bytes"], (bytes, bytearray)):
            return torch.from_numpy(decode_audio(audio["bytes"], name))
        if audio["bytes"] is None and isinstance(audio.get("path"), (str, os.PathLike)):
            return torch.from_numpy(load_audio(audio["path"]))
        raise DistilWhisperError(f"{name}: 'bytes' must be an audio file's bytes, or None beside a 'path' to read")
    keys = [key for key in ("array", "raw") if key in audio]
    if len(keys) != 1 or "sampling_rate" not in audio:
        raise DistilWhisperError(
            f"{name}: expected the samples under 'array' (or 'raw') and their rate under 'sampling_rate', "
            f"got the keys {', '.join(map(repr, audio)) or 'none'}"
        )
    array, rate = audio[keys[0]], audio["sampling_rate"]
    if not isinstance(array, (np.ndarray, torch.Tensor)):
        raise DistilWhisperError(f"{name}: '{keys[0]}' must be a numpy array or a torch tensor, got a {type(array).__name__}")
    if not is_whole_number(rate):
        raise DistilWhisperError(f"{name}: 'sampling_rate' must be a whole number of Hz, got {rate!r}")
    # (channels, samples), as datasets and the pipeline give multichannel audio; at most 2 rows, so that a
    # (samples, channels) array is refused rather than averaged along the wrong axis.
    samples = mono_samples(array, name, "float samples shaped (samples,) or (channels, samples) with 1 or 2 channels", 2)
    return torch.from_numpy(resample(samples.detach().cpu().numpy(), int(rate), name))


def mono_samples(array: np.ndarray | torch.Tensor, name: str, expected: str, max_channels: int = 0) -> torch.Tensor:
    """Float (or int16) samples as float32; (channels, samples) with up to `max_channels` rows is averaged.

    `expected` says what was wanted when the array is not that.
    """
    if isinstance(array, np.ndarray):
        if array.dtype.kind not in "fiu":
            raise DistilWhisperError(f"{name}: expected {expected}, got an array of {array.dtype}")
        array = torch_ready(array)
    samples = torch.as_tensor(array)
    if samples.layout != torch.strided or samples.is_meta:  # sparse samples, or a tensor with no data
        raise DistilWhisperError(f"{name}: expected {expected}, got a {str(samples.layout).removeprefix('torch.')} "
                                 f"{samples.device.type} tensor")  # fmt: skip
    shape_ok = samples.ndim == 1 or (samples.ndim == 2 and 1 <= samples.shape[0] <= max_channels)
    if not shape_ok or not (samples.is_floating_point() or samples.dtype == torch.int16):
        raise DistilWhisperError(f"{name}: expected {expected}, got {samples.dtype} of shape {tuple(samples.shape)}")
    samples = samples.float() / 32768 if samples.dtype == torch.int16 else samples.float()
    return samples.mean(0) if samples.ndim == 2 else samples
