import re
from pathlib import Path

from setuptools import find_packages, setup


def read_version() -> str:
    """distilwhisper/version.py holds the one copy; read as text, since importing the package needs torch."""
    text = (Path(__file__).parent / "distilwhisper" / "version.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE).group(1)


setup(
    name="distilwhisper",
    version=read_version(),
    description="Distil-Whisper and Whisper inference in plain PyTorch, token-for-token equal to transformers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    license_files=["LICENSE"],
    python_requires=">=3.10",
    packages=find_packages(include=["distilwhisper", "distilwhisper.*"]),
    package_data={"distilwhisper": ["py.typed"]},  # the type hints reach users' type checkers
    install_requires=["torch>=2.4", "numpy", "tiktoken>=0.7", "safetensors>=0.4", "huggingface-hub>=0.23"],
    extras_require={
        # The oracle (transformers) and the speed anchor (faster-whisper): tests and benchmarks only.
        # hypothesis: property tests; jiwer: the eval extra's, so CI tests `distilwhisper.evaluate`; ray[data]: the
        # scale extra's, so CI runs the scale runner on a local Ray; pytest-xdist: the suite on two processes.
        "test": ["pytest>=8", "pytest-xdist>=3", "transformers>=5.17,<6", "mypy>=1.10", "av>=12", "hypothesis>=6.100", "jiwer>=3.0",
                 "ray[data]>=2.40", "pyarrow>=14"],
        "bench": ["transformers>=5.17,<6", "faster-whisper>=1.0"],
        # PyAV: FFmpeg's libraries in a wheel, to decode mp3/flac/ogg... where no ffmpeg executable is installed.
        "audio": ["av>=12"],
        # `python -m distilwhisper.evaluate`: word error rate as Distil-Whisper computes it (jiwer over normalised text).
        "eval": ["jiwer>=3.0"],
        # `python -m distilwhisper.scale`: a dataset on a Ray cluster (Ray Data), parquet out, WER filter (jiwer).
        "scale": ["ray[data]>=2.40", "pyarrow>=14", "jiwer>=3.0"],
    },
    entry_points={"console_scripts": ["distilwhisper = distilwhisper.cli:main"]},
)
