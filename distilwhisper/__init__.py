"""distilwhisper: Whisper and Distil-Whisper inference in plain PyTorch."""

from .audio import load_audio, log_mel_spectrogram, pad_or_trim
from .errors import DistilWhisperError
from .model import ModelDims, Whisper
from .options import TranscribeOptions
from .transcribe import Segment, Transcriber, Transcription, load_model
from .version import __version__
from .weights import load_whisper
from .words import Word

__all__ = [
    "DistilWhisperError", "ModelDims", "Segment", "TranscribeOptions", "Transcriber", "Transcription", "Whisper", "Word",
    "__version__",
    "load_audio", "load_model", "load_whisper", "log_mel_spectrogram", "pad_or_trim",
]  # fmt: skip
