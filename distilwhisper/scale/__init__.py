"""Transcribe and pseudo-label a dataset of any size on a Ray cluster, resumable, every input exactly once in the
output, with Distil-Whisper's WER filter: `python -m distilwhisper.scale INPUT --output DIR --model ...` or
`transcribe_dataset(INPUT, ScaleOptions(output=DIR, ...))`. Needs the scale extra (Ray Data, pyarrow, jiwer):
`pip install "distilwhisper[scale]"`; `import distilwhisper` never imports this package. docs/scale.md has the rest.
"""

from typing import Any

__all__ = ["ScaleOptions", "Summary", "transcribe_dataset"]


def __getattr__(name: str) -> Any:
    """The runner is imported when first asked for, so that `python -m distilwhisper.scale` without the extra says
    what to install in one line rather than failing on `import pyarrow` first."""
    if name in __all__:
        from .runner import ScaleOptions, Summary, transcribe_dataset

        return {"ScaleOptions": ScaleOptions, "Summary": Summary, "transcribe_dataset": transcribe_dataset}[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
