"""Audio file (or its bytes) -> 16 kHz mono samples -> the log-Mel spectrogram Whisper's encoder was trained on."""

import io
import itertools
import math
import os
import shutil
import struct
import subprocess
import tempfile
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DistilWhisperError

# hard-coded audio hyperparameters of every Whisper model
SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30-second chunk
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 frames in a mel spectrogram input

# WAVE format tags; EXTENSIBLE keeps the real tag in the first two bytes of its SubFormat GUID
_WAVE_PCM, _WAVE_FLOAT, _WAVE_EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_MIN_RATE, _MAX_RATE = 1000, 384000  # sample rates the built-in resampler takes
_OTHER_DECODERS = "ffmpeg on PATH or PyAV (pip install 'distilwhisper[audio]')"

_ZEROS = 32  # sinc zero crossings each side: flat to 3.4 kHz even from 8 kHz telephone audio
# The resampler's memory, whatever the rates and however long the audio: at most this many filter taps at once
# (a phase table, or one block's per-output taps: 4 MB), and this many outputs per convolution (its workspace
# grows with its output; blocks this big keep it as fast as one call over the whole file).
_MAX_TAPS, _BLOCK_OUTPUTS = 1 << 20, 1 << 16


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an audio file to float32 mono samples in [-1, 1] at `sample_rate`.

    The ffmpeg executable reads any format when it is on PATH, else PyAV (`pip install distilwhisper[audio]`)
    when it is installed; without either only WAV files can be read, by a built-in reader.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise DistilWhisperError(f"{path} is a directory, not an audio file")
    if not os.path.isfile(path):
        raise DistilWhisperError(f"audio file not found: {path}")
    return _decode(path, path, sample_rate)


def decode_audio(data: bytes | bytearray, name: str = "bytes input", sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """load_audio for a file's bytes held in memory (standard input, a download...); `name` stands for it in messages."""
    if not data:
        raise DistilWhisperError(f"{name} is empty: no bytes to decode")
    return _decode(data, name, sample_rate)


def resample(audio: np.ndarray, orig_rate: int, name: str) -> np.ndarray:
    """float32 samples at `orig_rate` (1 kHz to 384 kHz) -> 16 kHz, as the built-in WAV reader resamples files."""
    _check_rate(orig_rate, name)
    return audio if orig_rate == SAMPLE_RATE else _resample(audio, orig_rate, SAMPLE_RATE)


def _decode(source: str | bytes | bytearray, name: str, sample_rate: int) -> np.ndarray:
    """A path (str) or a file's bytes, through the first decoder there is: ffmpeg, PyAV, the built-in WAV reader."""
    if shutil.which("ffmpeg"):
        audio = _decode_ffmpeg(source, name, sample_rate)
    elif (av := _pyav()) is not None:
        audio = _decode_pyav(av, source, name, sample_rate)
    else:
        audio = _read_wav(source, name, sample_rate)
    if audio.size == 0:
        raise DistilWhisperError(f"{name} contains no audio samples")
    return audio


def _decode_ffmpeg(source: str | bytes | bytearray, name: str, sample_rate: int) -> np.ndarray:
    if not isinstance(source, str):
        # Bytes go through a file, not a pipe: ffmpeg cannot seek in a pipe, and reads no samples (exit status 0)
        # from an MP4/M4A whose index comes after its samples, as ffmpeg itself writes them.
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "audio")
            with open(path, "wb") as f:
                f.write(source)
            return _decode_ffmpeg(path, name, sample_rate)
    # ffmpeg downmixes and resamples too; 16-bit output is all the precision Whisper needs.
    cmd = ["ffmpeg", "-nostdin", "-threads", "0", "-i", source,
           "-f", "s16le", "-ac", "1", "-acodec", "pcm_s16le", "-ar", str(sample_rate), "-"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True)
    if result.returncode != 0:
        # ffmpeg's last stderr line is the reason ("<input>: Invalid data found when processing input", ...)
        lines = result.stderr.decode(errors="replace").strip().splitlines() or ["unknown error"]
        raise DistilWhisperError(f"could not decode {name} with ffmpeg: {lines[-1].removeprefix(f'{source}: ')}")
    return _from_s16(result.stdout)


def _pyav():
    """The `av` module (PyAV: FFmpeg's libraries in a wheel) when it is installed, else None."""
    try:
        import av
    except ImportError:
        return None
    return av


def _decode_pyav(av, source: str | bytes | bytearray, name: str, sample_rate: int) -> np.ndarray:
    # The same conversion as the ffmpeg command: libswresample to 16-bit mono at `sample_rate`.
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    try:
        with av.open(source if isinstance(source, str) else io.BytesIO(source), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise DistilWhisperError(f"could not decode {name} with PyAV: it has no audio stream")
            frames = itertools.chain(container.decode(container.streams.audio[0]), [None])  # None flushes the resampler
            pcm = b"".join(out.to_ndarray().tobytes() for frame in frames for out in resampler.resample(frame))
    except av.error.FFmpegError as e:
        raise DistilWhisperError(f"could not decode {name} with PyAV: {e.strerror or e}") from None
    return _from_s16(pcm)


def _from_s16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0


def _read_wav(source: str | bytes | bytearray, name: str, sample_rate: int) -> np.ndarray:
    # Parse RIFF chunks by hand: the stdlib `wave` module rejects float and WAVE_FORMAT_EXTENSIBLE files.
    if isinstance(source, str):
        try:
            with open(source, "rb") as f:
                source = f.read()
        except OSError as e:
            raise DistilWhisperError(f"cannot read {name}: {e.strerror}") from None
    raw = memoryview(source)
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise DistilWhisperError(f"could not decode {name}: not a WAV file, and other formats need {_OTHER_DECODERS}")
    chunks, pos = {}, 12
    while pos + 8 <= len(raw):
        chunk_id, size = struct.unpack_from("<4sI", raw, pos)
        # slicing clips a size that overruns the file, as streamed WAVs write it
        chunks.setdefault(bytes(chunk_id), raw[pos + 8 : pos + 8 + size])
        pos += 8 + size + size % 2  # chunks are padded to an even length
    fmt, data = chunks.get(b"fmt "), chunks.get(b"data")
    if fmt is None or data is None or len(fmt) < 16:
        raise DistilWhisperError(f"could not decode {name}: corrupt WAV file (missing fmt or data chunk)")
    tag, channels, rate, _, block_align, _ = struct.unpack_from("<HHIIHH", fmt)
    if tag == _WAVE_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]
    if channels == 0 or rate == 0:
        raise DistilWhisperError(f"could not decode {name}: corrupt WAV file ({channels} channels at {rate} Hz)")
    _check_rate(rate, f"could not decode {name}")  # before decoding: a wild rate would size the resampler
    width = block_align // channels  # container bytes per sample; 20-bit audio lives in 3 bytes
    count = len(data) // block_align * channels if block_align else 0  # whole frames only

    if tag == _WAVE_PCM and width == 1:  # 8-bit PCM is the one unsigned format
        audio = (np.frombuffer(data, np.uint8, count).astype(np.float32) - 128.0) / 128.0
    elif tag == _WAVE_PCM and width in (2, 3, 4):
        # Put each sample in the top bytes of an int32 so one view reads 16-, 24- and 32-bit PCM alike.
        padded = np.zeros((count, 4), np.uint8)
        padded[:, 4 - width :] = np.frombuffer(data, np.uint8, count * width).reshape(count, width)
        audio = padded.view("<i4")[:, 0].astype(np.float32) / 2.0**31
    elif tag == _WAVE_FLOAT and width in (4, 8):
        audio = np.frombuffer(data, f"<f{width}", count).astype(np.float32)
    else:
        raise DistilWhisperError(
            f"could not decode {name}: unsupported WAV encoding (format tag {tag:#06x}, {8 * width}-bit), "
            f"which needs {_OTHER_DECODERS}"
        )
    audio = audio.reshape(-1, channels).mean(axis=1)
    if rate != sample_rate:
        audio = _resample(audio, rate, sample_rate)
    # ffmpeg's 16-bit output clips; do the same so float WAVs and resampling overshoot stay in range
    return np.clip(audio, -1.0, 1.0)


def _check_rate(rate: int, context: str) -> None:
    if not _MIN_RATE <= rate <= _MAX_RATE:
        raise DistilWhisperError(
            f"{context}: unsupported sample rate {rate} Hz (the built-in resampler takes {_MIN_RATE} to {_MAX_RATE} Hz)"
        )


def _resample(audio: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling with a Hann-windowed sinc: torchaudio.functional.resample's algorithm, longer filter.

    Output k interpolates the input around position k * orig_rate / new_rate, a block of outputs at a time,
    so memory stays bounded however long the audio and whatever the rates.
    """
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    # Cut off just below the lower Nyquist frequency, leaving room for the filter's transition band;
    # as a fraction of the input's Nyquist frequency, the unit of torch.sinc's argument.
    cutoff = 0.99 * min(orig, new) / orig
    half = math.ceil(_ZEROS / cutoff)  # the filter reaches this many input samples either side of a position
    length = math.ceil(len(audio) * new / orig)
    x = F.pad(torch.from_numpy(audio), (half, half + orig))  # x[half + i] is input sample i
    out = torch.empty(length)  # filled in place: per-block pieces would fragment the heap between blocks
    if new * (2 * half + orig) <= _MAX_TAPS:
        # Positions repeat their fractional part every `new` outputs (every `orig` inputs): one kernel per phase,
        # kernel j interpolating at input offset j * orig / new, and one strided convolution applies them all.
        offsets = torch.arange(-half, half + orig, dtype=torch.float64)
        kernels = _windowed_sinc(offsets - torch.arange(new, dtype=torch.float64)[:, None] * orig / new, cutoff)
        groups = max(1, _BLOCK_OUTPUTS // new)  # of `new` outputs, per block
        for first in range(0, length, groups * new):
            start = first // new * orig
            block = x[start : start + (groups - 1) * orig + len(offsets)]
            phases = F.conv1d(block[None, None], kernels[:, None], stride=orig)[0]  # (new, groups)
            out[first : first + groups * new] = phases.T.reshape(-1)[: length - first]
    else:
        # Rates with large coprime parts have too many phases for a table (16000 kernels of 11193 taps for
        # 11127 Hz): compute each output's taps from its own position instead.
        taps = torch.arange(1 - half, half + 1, dtype=torch.float32)  # input offsets from a position's integer part
        windows = x[1:].unfold(0, len(taps), 1)  # windows[i]: the input samples that taps reach from position i
        step = max(1, _MAX_TAPS // len(taps))
        for first in range(0, length, step):
            scaled = torch.arange(first, min(first + step, length)) * orig  # positions times `new`: exact integers
            index, fraction = scaled // new, scaled % new / new
            out[first : first + step] = (windows[index] * _windowed_sinc(taps - fraction[:, None], cutoff)).sum(1)
    return out.numpy()


def _windowed_sinc(offsets: torch.Tensor, cutoff: float) -> torch.Tensor:
    """The filter's taps at `offsets` input samples from an output's position, as float32."""
    t = (offsets * cutoff).clamp_(-_ZEROS, _ZEROS)  # in sinc zero crossings
    window = torch.cos(t * (math.pi / 2 / _ZEROS)).square_()  # Hann, reaching zero at the last zero crossing
    return window.mul_(torch.sinc(t)).mul_(cutoff).float()


def pad_or_trim(audio: torch.Tensor | np.ndarray, length: int = N_SAMPLES, axis: int = -1):
    """Zero-pad or cut `audio` along `axis` to exactly `length` samples, as the encoder expects."""
    size = audio.shape[axis]
    if size > length:
        if torch.is_tensor(audio):
            return audio.narrow(axis, 0, length)
        return audio.take(range(length), axis=axis)
    if size < length:
        widths = [(0, 0)] * audio.ndim
        widths[axis] = (0, length - size)
        if torch.is_tensor(audio):
            return F.pad(audio, [p for w in reversed(widths) for p in w])  # F.pad lists the last axis first
        return np.pad(audio, widths)
    return audio


@lru_cache(maxsize=None)
def mel_filters(n_mels: int, device=None) -> torch.Tensor:
    """The (n_mels, N_FFT // 2 + 1) triangular filterbank of librosa.filters.mel(sr=16000, n_fft=400):
    Slaney's mel scale and Slaney's area normalization over 0..8000 Hz."""
    # Slaney's mel scale is linear (3 mels per 200 Hz) below 1 kHz and logarithmic above.
    log_step = np.log(6.4) / 27.0
    top_mel = 15.0 + np.log(SAMPLE_RATE / 2 / 1000.0) / log_step
    mels = np.linspace(0.0, top_mel, n_mels + 2)
    edges = np.where(mels < 15.0, mels * 200.0 / 3.0, 1000.0 * np.exp(log_step * (mels - 15.0)))
    fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    # Filter i rises from edges[i] to a peak of 1 at edges[i + 1] and falls back to 0 at edges[i + 2].
    distance = edges[:, None] - fft_freqs[None, :]
    rising = -distance[:-2] / np.diff(edges)[:-1, None]
    falling = distance[2:] / np.diff(edges)[1:, None]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    # Equal area per filter, so the wide high-frequency bands do not outweigh the narrow low ones.
    filters *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(filters).to(device=device, dtype=torch.float32)


def log_mel_spectrogram(audio: torch.Tensor | np.ndarray, n_mels: int = 80, device=None) -> torch.Tensor:
    """Whisper's input features for 16 kHz audio of shape (samples,) or (batch, samples).

    Returns float32 (n_mels, frames) or (batch, n_mels, frames) on `device` (default: the input's).
    Pad with pad_or_trim first: the encoder expects N_SAMPLES samples, i.e. N_FRAMES frames.
    """
    audio = torch.as_tensor(audio).to(device=device, dtype=torch.float32)
    if audio.ndim not in (1, 2) or audio.shape[-1] <= N_FFT // 2:
        raise DistilWhisperError(
            f"expected audio of shape (samples,) or (batch, samples) with more than {N_FFT // 2} samples, "
            f"got {tuple(audio.shape)}"
        )
    if not torch.isfinite(audio).all():
        raise DistilWhisperError("audio passed to log_mel_spectrogram contains NaN or infinite samples")
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    # Whisper drops the last frame, so N_SAMPLES samples give exactly N_FRAMES frames.
    power = stft[..., :-1].abs() ** 2
    log_spec = (mel_filters(n_mels, audio.device) @ power).clamp(min=1e-10).log10()
    # Keep 80 dB below each example's own peak, then scale to roughly [-1, 1].
    peak = log_spec.amax(dim=(-2, -1), keepdim=True)
    log_spec = torch.maximum(log_spec, peak - 8.0)
    return (log_spec + 4.0) / 4.0
