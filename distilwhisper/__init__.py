"""distilwhisper: Whisper and Distil-Whisper inference in plain PyTorch."""

from .errors import DistilWhisperError
from .model import ModelDims, Whisper
from .transcribe import Transcriber, Transcription, load_model
from .version import __version__

__all__ = ["DistilWhisperError", "ModelDims", "Transcriber", "Transcription", "Whisper", "__version__", "load_model"]
