"""Audio file (or its bytes) -> 16 kHz mono samples -> the log-Mel spectrogram Whisper's encoder was trained on.

Files are decoded a block at a time (`stream_audio`): `load_audio` joins the blocks, long-form transcription
reads them as it goes, so its memory does not grow with the length of the file.
"""

import io
import itertools
import math
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DistilWhisperError, first_line, is_whole_number

# hard-coded audio hyperparameters of every Whisper model
SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30-second chunk
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 frames in a mel spectrogram input
TIME_PRECISION = 0.02  # seconds per timestamp token: two mel frames, one encoder position
# The loudest samples log_mel_spectrogram surely takes: a frame's power is at most (window sum x peak)^2 =
# (200 x peak)^2, finite in float32 for peaks up to 9e16. Audio belongs in [-1, 1]; int32 scale is 2e9.
LOUDEST_SAMPLE = 1e16

# WAVE format tags; EXTENSIBLE keeps the real tag in the first two bytes of its SubFormat GUID
_WAVE_PCM, _WAVE_FLOAT, _WAVE_EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# Sample rates taken in and given out. Below 1 kHz is no recording of speech (telephones use 8 kHz) and each input
# sample would become dozens of output ones; 384 kHz is the highest rate audio hardware records. Beyond either,
# decoders' blocks and the resampler's filters grow without bound (10**9 Hz would ask ffmpeg for 20 GB blocks).
_MIN_RATE, _MAX_RATE = 1000, 384000
_OTHER_DECODERS = "ffmpeg on PATH or PyAV (pip install 'distilwhisper[audio]')"
# Decoders hand samples on about this many seconds at a time: a long-form chunk's worth, few enough calls.
_BLOCK_SECONDS = 10.0

_ZEROS = 32  # sinc zero crossings each side: flat to 3.4 kHz even from 8 kHz telephone audio
# The resampler's memory, whatever the rates and however long the audio: at most this many filter taps at once
# (a phase table, or one block's per-output taps: 4 MB), and this many outputs per convolution (its workspace
# grows with its output; blocks this big keep it as fast as one call over the whole file).
_MAX_TAPS, _BLOCK_OUTPUTS = 1 << 20, 1 << 16

# Whisper models read 80 or 128 mel bands. From 150 bands up, some bands' filters fall between the FFT's 201
# frequency bins and are all zeros (librosa and transformers warn of it): those counts are refused.
_MAX_MELS = 149


@dataclass
class AudioStream:
    """A file's 16 kHz samples as float32 blocks, read from the file as they are asked for; iterate it once.

    `duration` is the length in seconds that the file's header or metadata gives (None when it gives none):
    an estimate for progress reports, never used to cut the audio.
    """

    name: str
    blocks: Iterator[np.ndarray]
    duration: float | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.blocks


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an audio file to float32 mono samples in [-1, 1] at `sample_rate`.

    The ffmpeg executable reads any format when it is on PATH, else PyAV (`pip install distilwhisper[audio]`)
    when it is installed; without either only WAV files can be read, by a built-in reader.
    """
    return np.concatenate(list(stream_audio(path, sample_rate)))


def stream_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, name: str | None = None) -> Iterator[np.ndarray]:
    """load_audio a block at a time: float32 blocks of about 10 s whose concatenation is exactly load_audio's
    samples, each decoded when it is asked for (ffmpeg's output read from a pipe, a WAV file read a block at a
    time, PyAV frame by frame), so memory holds a block or two whatever the length of the file.

    A missing or empty file is an error at once; a file that cannot be decoded, at the first block; a decoder
    that fails part-way (ffmpeg exiting with an error), at the block where it failed. Messages call the file
    `name` (default: its path).
    """
    path = os.fspath(path)
    name = name or path
    if os.path.isdir(path):
        raise DistilWhisperError(f"{name} is a directory, not an audio file")
    if not os.path.exists(path):
        raise DistilWhisperError(f"audio file not found: {name}")
    if not os.path.isfile(path):
        # A device or a pipe may never end (/dev/zero, a FIFO nobody writes to) and has no size to check;
        # the CLI copies standard input ("-") into a file first.
        raise DistilWhisperError(
            f"{name} is not a regular file (a device, pipe or socket): pass a file's path, or its bytes to decode_audio"
        )
    if os.path.getsize(path) == 0:
        raise DistilWhisperError(f"{name} is empty: no bytes to decode")
    return _decode(path, name, sample_rate)


def decode_audio(data: bytes | bytearray, name: str = "bytes input", sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """load_audio for a file's bytes held in memory (standard input, a download...); `name` stands for it in messages."""
    if not data:
        raise DistilWhisperError(f"{name} is empty: no bytes to decode")
    return np.concatenate(list(_decode(data, name, sample_rate)))


def audio_duration(path: str | os.PathLike) -> float | None:
    """A file's length in seconds as its WAV header, else ffprobe, else PyAV's metadata gives it; None when
    none does. Cheap (no decoding), and only as exact as the file's own bookkeeping: for progress reports."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return _wav_header(f, path).duration
    except (OSError, DistilWhisperError):
        pass  # not a WAV file the built-in reader takes: ask the others
    if shutil.which("ffprobe"):
        cmd = ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path]
        result = subprocess.run(cmd, capture_output=True, text=True)
        try:
            return float(result.stdout.strip()) if result.returncode == 0 else None
        except ValueError:  # "N/A": a format that does not say
            return None
    if (av := _pyav()) is not None:
        try:
            with av.open(path, metadata_errors="ignore") as container:
                return container.duration / av.time_base if container.duration else None
        except av.error.FFmpegError:
            return None
    return None


def resample(audio: np.ndarray, orig_rate: int, name: str) -> np.ndarray:
    """float32 samples at `orig_rate` (1 kHz to 384 kHz) -> 16 kHz, as the built-in WAV reader resamples files."""
    _check_rate(orig_rate, name)
    if orig_rate == SAMPLE_RATE:
        return audio
    resampler = _Resampler(orig_rate, SAMPLE_RATE)
    return np.concatenate([resampler.feed(audio), resampler.flush()])


def _decode(source: str | bytes | bytearray, name: str, sample_rate: int) -> Iterator[np.ndarray]:
    """A path (str) or a file's bytes, through the first decoder there is: ffmpeg, PyAV, the built-in WAV reader."""
    _check_rate(sample_rate, "sample_rate")  # now, not at the first block: a wild rate makes a decoder hang
    if shutil.which("ffmpeg"):
        blocks = _stream_ffmpeg(source, name, sample_rate)
    elif (av := _pyav()) is not None:
        blocks = _stream_pyav(av, source, name, sample_rate)
    else:
        blocks = _stream_wav(source, name, sample_rate)
    return _not_empty(blocks, name)


def _not_empty(blocks: Iterator[np.ndarray], name: str) -> Iterator[np.ndarray]:
    """The blocks that hold samples; a file that gives none at all is an error."""
    empty = True
    for block in blocks:
        if block.size:
            empty = False
            yield block
    if empty:
        raise DistilWhisperError(f"{name} contains no audio samples")


def _stream_ffmpeg(source: str | bytes | bytearray, name: str, sample_rate: int) -> Iterator[np.ndarray]:
    if not isinstance(source, str):
        # Bytes go through a file, not a pipe: ffmpeg cannot seek in a pipe, and reads no samples (exit status 0)
        # from an MP4/M4A whose index comes after its samples, as ffmpeg itself writes them.
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "audio")
            with open(path, "wb") as f:
                f.write(source)
            yield from _stream_ffmpeg(path, name, sample_rate)
        return
    if (rate := _wav_rate(source)) is not None:
        _check_rate(rate, f"could not decode {name}")  # as the built-in reader does: 8 Hz would give hours of samples
    # ffmpeg downmixes and resamples too; 16-bit output is all the precision Whisper needs.
    cmd = ["ffmpeg", "-nostdin", "-threads", "0", "-i", source,
           "-f", "s16le", "-ac", "1", "-acodec", "pcm_s16le", "-ar", str(sample_rate), "-"]  # fmt: skip
    block_bytes = 2 * round(_BLOCK_SECONDS * sample_rate)
    # stderr goes to a file, not a pipe: nobody reads it until the end, and a full pipe would stall ffmpeg.
    with tempfile.TemporaryFile() as log, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log) as ffmpeg:
        assert ffmpeg.stdout is not None  # stdout=PIPE
        try:
            while pcm := ffmpeg.stdout.read(block_bytes):
                yield _from_s16(pcm[: len(pcm) // 2 * 2])
        except BaseException:  # the reader stopped early (an error, Ctrl-C, a closed generator): stop ffmpeg too
            ffmpeg.kill()
            raise
        if ffmpeg.wait() != 0:
            # ffmpeg's last stderr line is the reason ("<input>: Invalid data found when processing input", ...)
            log.seek(0)
            lines = log.read().decode(errors="replace").strip().splitlines() or ["unknown error"]
            raise DistilWhisperError(f"could not decode {name} with ffmpeg: {lines[-1].removeprefix(f'{source}: ')}")


def _wav_rate(path: str) -> int | None:
    """The sample rate in a WAV file's header; None for other files, whose rate only decoding tells."""
    try:
        with open(path, "rb") as f:
            return _wav_header(f, path).rate
    except (OSError, DistilWhisperError):
        return None


def _pyav():
    """The `av` module (PyAV: FFmpeg's libraries in a wheel) when it is installed, else None."""
    try:
        import av
    except ImportError:
        return None
    return av


def _stream_pyav(av, source: str | bytes | bytearray, name: str, sample_rate: int) -> Iterator[np.ndarray]:
    # The same conversion as the ffmpeg command: libswresample to 16-bit mono at `sample_rate`.
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    block_bytes, pending = 2 * round(_BLOCK_SECONDS * sample_rate), []
    try:
        with av.open(source if isinstance(source, str) else io.BytesIO(source), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise DistilWhisperError(f"could not decode {name} with PyAV: it has no audio stream")
            _check_rate(container.streams.audio[0].rate, f"could not decode {name}")  # as for ffmpeg
            frames = itertools.chain(container.decode(container.streams.audio[0]), [None])  # None flushes the resampler
            for frame in frames:  # frames are a few ms each: hand them on gathered into blocks
                pending += [out.to_ndarray().tobytes() for out in resampler.resample(frame)]
                if sum(map(len, pending)) >= block_bytes or frame is None:
                    yield _from_s16(b"".join(pending))
                    pending = []
    except av.error.FFmpegError as e:
        raise DistilWhisperError(f"could not decode {name} with PyAV: {e.strerror or e}") from None


def _from_s16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0


@dataclass(frozen=True)
class _WavHeader:
    tag: int  # _WAVE_PCM or _WAVE_FLOAT (EXTENSIBLE resolved), else unsupported
    channels: int
    rate: int
    block_align: int  # bytes per frame (all channels)
    data_start: int  # file offset of the samples
    data_bytes: int  # as far as the file holds them

    @property
    def duration(self) -> float:
        return self.data_bytes // self.block_align / self.rate if self.block_align else 0.0


def _wav_header(f: BinaryIO, name: str) -> _WavHeader:
    """Parse RIFF chunks by hand (the stdlib `wave` module rejects float and WAVE_FORMAT_EXTENSIBLE files),
    reading the headers only: the samples stay in the file."""
    head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise DistilWhisperError(f"could not decode {name}: not a WAV file, and other formats need {_OTHER_DECODERS}")
    size_of_file = f.seek(0, io.SEEK_END)
    fmt, data, pos = None, None, 12
    while pos + 8 <= size_of_file and (fmt is None or data is None):
        f.seek(pos)
        chunk_id, size = struct.unpack("<4sI", f.read(8))
        if chunk_id == b"fmt " and fmt is None:
            fmt = f.read(min(size, 64))  # the fields we read are in its first 26 bytes
        elif chunk_id == b"data" and data is None:
            # a size that overruns the file (as streamed WAVs write it) stops at the end of the file
            data = (pos + 8, min(size, size_of_file - pos - 8))
        pos += 8 + size + size % 2  # chunks are padded to an even length
    if fmt is None or data is None or len(fmt) < 16:
        raise DistilWhisperError(f"could not decode {name}: corrupt WAV file (missing fmt or data chunk)")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _WAVE_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]
    if channels == 0 or rate == 0:
        raise DistilWhisperError(f"could not decode {name}: corrupt WAV file ({channels} channels at {rate} Hz)")
    # Frames are read block_align bytes at a time: a header whose sample size says otherwise would be misread.
    # A sample fills whole bytes (20-bit audio lives in 3).
    if block_align != channels * ((bits + 7) // 8):
        raise DistilWhisperError(
            f"could not decode {name}: corrupt WAV file "
            f"({block_align}-byte frames cannot hold {channels} x {bits}-bit samples)"
        )
    return _WavHeader(tag, channels, rate, block_align, *data)


def _stream_wav(source: str | bytes | bytearray, name: str, sample_rate: int) -> Iterator[np.ndarray]:
    f: BinaryIO
    if isinstance(source, str):
        try:
            f = open(source, "rb")
        except OSError as e:
            raise DistilWhisperError(f"cannot read {name}: {e.strerror}") from None
    else:
        f = io.BytesIO(source)
    with f:
        header = _wav_header(f, name)
        _check_rate(header.rate, f"could not decode {name}")  # before decoding: a wild rate would size the resampler
        width = header.block_align // header.channels  # container bytes per sample; 20-bit audio lives in 3 bytes
        if not (header.tag == _WAVE_PCM and width in (1, 2, 3, 4) or header.tag == _WAVE_FLOAT and width in (4, 8)):
            raise DistilWhisperError(
                f"could not decode {name}: unsupported WAV encoding (format tag {header.tag:#06x}, {8 * width}-bit), "
                f"which needs {_OTHER_DECODERS}"
            )
        resampler = _Resampler(header.rate, sample_rate) if header.rate != sample_rate else None
        f.seek(header.data_start)
        left, block_bytes = header.data_bytes, max(1, round(_BLOCK_SECONDS * header.rate)) * header.block_align
        while left >= header.block_align:
            data = f.read(min(left, block_bytes))
            left -= len(data)
            audio = _wav_samples(data, header.tag, width, header.channels, header.block_align)
            # ffmpeg's 16-bit output clips; do the same so float WAVs and resampling overshoot stay in range
            yield np.clip(resampler.feed(audio) if resampler else audio, -1.0, 1.0)
        if resampler:
            yield np.clip(resampler.flush(), -1.0, 1.0)


def _wav_samples(data: bytes, tag: int, width: int, channels: int, block_align: int) -> np.ndarray:
    """The whole frames in `data` as float32 mono samples."""
    count = len(data) // block_align * channels
    if tag == _WAVE_PCM and width == 1:  # 8-bit PCM is the one unsigned format
        audio = (np.frombuffer(data, np.uint8, count).astype(np.float32) - 128.0) / 128.0
    elif tag == _WAVE_PCM:
        # Put each sample in the top bytes of an int32 so one view reads 16-, 24- and 32-bit PCM alike.
        padded = np.zeros((count, 4), np.uint8)
        padded[:, 4 - width :] = np.frombuffer(data, np.uint8, count * width).reshape(count, width)
        audio = padded.view("<i4")[:, 0].astype(np.float32) / 2.0**31
    else:
        audio = np.frombuffer(data, f"<f{width}", count).astype(np.float32)
    return audio.reshape(-1, channels).mean(axis=1)


def _check_rate(rate: int, context: str) -> None:
    if not is_whole_number(rate) or not _MIN_RATE <= rate <= _MAX_RATE:
        raise DistilWhisperError(
            f"{context}: unsupported sample rate {rate!r} Hz "
            f"(expected a whole number from {_MIN_RATE} to {_MAX_RATE} Hz)"
        )


class _Resampler:
    """Band-limited resampling with a Hann-windowed sinc: torchaudio.functional.resample's algorithm, longer filter,
    fed the input a block at a time.

    Output k interpolates the input around position k * orig_rate / new_rate. Outputs are computed in fixed
    blocks (the same ones however the input arrives), each once all the input its filter reaches is there, so
    resampling a file block by block gives exactly the samples that resampling it whole gives, and memory stays
    bounded however long the audio and whatever the rates.
    """

    def __init__(self, orig_rate: int, new_rate: int):
        g = math.gcd(orig_rate, new_rate)
        self.orig, self.new = orig_rate // g, new_rate // g
        # Cut off just below the lower Nyquist frequency, leaving room for the filter's transition band;
        # as a fraction of the input's Nyquist frequency, the unit of torch.sinc's argument.
        self.cutoff = 0.99 * min(self.orig, self.new) / self.orig
        self.half = math.ceil(_ZEROS / self.cutoff)  # the filter reaches this many input samples either side of a position
        self.kernels = None
        if self.new * (2 * self.half + self.orig) <= _MAX_TAPS:
            # Positions repeat their fractional part every `new` outputs (every `orig` inputs): one kernel per phase,
            # kernel j interpolating at input offset j * orig / new, and one strided convolution applies them all.
            offsets = torch.arange(-self.half, self.half + self.orig, dtype=torch.float64)
            self.kernels = _windowed_sinc(offsets - torch.arange(self.new, dtype=torch.float64)[:, None] * self.orig / self.new, self.cutoff)
            self.block = max(1, _BLOCK_OUTPUTS // self.new) * self.new  # outputs per block
        else:
            # Rates with large coprime parts have too many phases for a table (16000 kernels of 11193 taps for
            # 11127 Hz): compute each output's taps from its own position instead.
            self.taps = torch.arange(1 - self.half, self.half + 1, dtype=torch.float32)  # offsets from a position's integer part
            self.block = max(1, _MAX_TAPS // len(self.taps))
        self.inputs = 0  # samples fed so far
        self.done = 0  # outputs computed so far
        self.start = 0  # x[start:] is kept, where x is the input with `half` zeros before it (x[half + i] is input i)
        self.kept = torch.zeros(self.half)

    def feed(self, audio: np.ndarray) -> np.ndarray:
        """The outputs that `audio`, appended to the input so far, completes."""
        self.inputs += len(audio)
        self.kept = torch.cat([self.kept, torch.from_numpy(np.ascontiguousarray(audio, np.float32))])
        return self._run(None)

    def flush(self) -> np.ndarray:
        """The remaining outputs, the input ended: ceil(inputs * new_rate / orig_rate) outputs in all."""
        self.kept = F.pad(self.kept, (0, self.half + self.orig))
        return self._run(math.ceil(self.inputs * self.new / self.orig))

    def _reach(self, first: int, stop: int) -> tuple[int, int]:
        """x[lo:hi]: the input that outputs first..stop-1 read."""
        if self.kernels is not None:
            lo = first // self.new * self.orig
            return lo, lo + (stop - first - 1) // self.new * self.orig + self.kernels.shape[1]
        return 1 + first * self.orig // self.new, 1 + (stop - 1) * self.orig // self.new + len(self.taps)

    def _run(self, length: int | None) -> np.ndarray:
        """Whole blocks while their input is there; with the input's `length` known, up to it (a last short block)."""
        blocks = []
        while length is None or self.done < length:
            first = self.done
            stop = first + self.block if length is None else min(first + self.block, length)
            lo, hi = self._reach(first, first + self.block)
            if length is None and hi > self.start + len(self.kept):
                break  # the filter reaches past the input so far
            x = self.kept[lo - self.start : hi - self.start]
            if self.kernels is not None:
                phases = F.conv1d(x[None, None], self.kernels[:, None], stride=self.orig)[0]  # (new, block // new)
                blocks.append(phases.T.reshape(-1)[: stop - first])
            else:
                scaled = torch.arange(first, stop) * self.orig  # positions times `new`: exact integers
                index, fraction = scaled // self.new - (lo - 1), scaled % self.new / self.new
                windows = x.unfold(0, len(self.taps), 1)  # windows[i]: the input samples taps reach from position lo - 1 + i
                blocks.append((windows[index] * _windowed_sinc(self.taps - fraction[:, None], self.cutoff)).sum(1))
            self.done = stop
            next_lo = self._reach(stop, stop + 1)[0]
            self.kept, self.start = self.kept[next_lo - self.start :], next_lo
        return torch.cat(blocks).numpy() if blocks else np.zeros(0, np.float32)


def _windowed_sinc(offsets: torch.Tensor, cutoff: float) -> torch.Tensor:
    """The filter's taps at `offsets` input samples from an output's position, as float32."""
    t = (offsets * cutoff).clamp_(-_ZEROS, _ZEROS)  # in sinc zero crossings
    window = torch.cos(t * (math.pi / 2 / _ZEROS)).square_()  # Hann, reaching zero at the last zero crossing
    return window.mul_(torch.sinc(t)).mul_(cutoff).float()


def torch_ready(array: np.ndarray) -> np.ndarray:
    """`array`, or a native-endian, contiguous, writable copy of it: torch refuses byte-swapped and negatively
    strided arrays, and warns on read-only ones (what decoders and memory maps return)."""
    return np.require(array, dtype=array.dtype.newbyteorder("="), requirements=["C", "W"])


_Samples = TypeVar("_Samples", torch.Tensor, np.ndarray)  # pad_or_trim gives back the type it is given


def pad_or_trim(audio: _Samples, length: int = N_SAMPLES, axis: int = -1) -> _Samples:
    """Zero-pad or cut `audio` along `axis` to exactly `length` samples, as the encoder expects."""
    if not isinstance(audio, (np.ndarray, torch.Tensor)):
        raise DistilWhisperError(f"pad_or_trim expects a numpy array or torch tensor, got {type(audio).__name__}")
    if not is_whole_number(length) or length < 0:
        raise DistilWhisperError(f"pad_or_trim: length must be a whole number of samples, 0 or more, got {length!r}")
    if not is_whole_number(axis) or not -audio.ndim <= axis < audio.ndim:
        raise DistilWhisperError(f"pad_or_trim: axis {axis!r} does not exist in audio of shape {tuple(audio.shape)}")
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
    if not is_whole_number(n_mels) or not 1 <= n_mels <= _MAX_MELS:
        raise DistilWhisperError(
            f"n_mels must be a whole number from 1 to {_MAX_MELS} (Whisper models use 80 or 128), got {n_mels!r}"
        )
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
    audio = _feature_samples(audio, device)
    filters = mel_filters(n_mels, audio.device)
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    # Whisper drops the last frame, so N_SAMPLES samples give exactly N_FRAMES frames.
    power = stft[..., :-1].abs() ** 2
    log_spec = (filters @ power).clamp(min=1e-10).log10()
    peak = log_spec.amax(dim=(-2, -1), keepdim=True)
    _check_finite(audio, peak)
    # Keep 80 dB below each example's own peak, then scale to roughly [-1, 1].
    log_spec = torch.maximum(log_spec, peak - 8.0)
    return (log_spec + 4.0) / 4.0


def _feature_samples(audio: torch.Tensor | np.ndarray, device) -> torch.Tensor:
    """log_mel_spectrogram's input as float32 samples on `device`, or a one-line error saying what is wrong."""
    if isinstance(audio, np.ndarray) and audio.dtype.kind in "fiu":
        audio = torch.from_numpy(torch_ready(audio))
    if not isinstance(audio, torch.Tensor) or audio.is_complex() or audio.dtype == torch.bool:
        got = f"{type(audio).__name__} of {audio.dtype}" if hasattr(audio, "dtype") else type(audio).__name__
        raise DistilWhisperError(f"log_mel_spectrogram expects real samples as a numpy array or torch tensor, got {got}")
    try:
        audio = audio.to(device=device, dtype=torch.float32)
    except (RuntimeError, TypeError, AssertionError) as e:  # an unknown device, or one not here (CUDA asserts)
        raise DistilWhisperError(f"log_mel_spectrogram cannot use device {device!r}: {first_line(e)}") from None
    if audio.ndim not in (1, 2) or audio.shape[-1] <= N_FFT // 2 or audio.shape[0] == 0:
        raise DistilWhisperError(
            f"expected audio of shape (samples,) or (batch, samples) with a batch of at least one and more than "
            f"{N_FFT // 2} samples, got {tuple(audio.shape)}"
        )
    return audio


def _check_finite(audio: torch.Tensor, peak: torch.Tensor) -> None:
    """NaN or infinite samples, or samples so loud (from about 1e17 up) that float32's power overflows to inf: the
    peak of the features shows it if any bin does. One read from the device for both."""
    finite, peak_finite = torch.stack([torch.isfinite(audio).all(), torch.isfinite(peak).all()]).tolist()
    if not finite:
        raise DistilWhisperError("audio passed to log_mel_spectrogram contains NaN or infinite samples")
    if not peak_finite:
        raise DistilWhisperError(
            "audio passed to log_mel_spectrogram is too loud: its power overflows float32 (samples should lie in [-1, 1])"
        )
