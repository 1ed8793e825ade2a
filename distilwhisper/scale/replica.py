"""A model replica: one loaded checkpoint that turns batches of Items into rows. Ray Data builds one per actor and
calls it batch after batch, so the model is loaded once per replica, not per batch.

Nothing a single input does can fail the batch: an input that cannot be read or decoded is an error row, and the
batch's other inputs are still transcribed (Ray Data would otherwise fail the job, or, with allowed errors, drop the
good inputs batched with the bad one).
"""

import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import torch

from ..audio import SAMPLE_RATE, AudioStream
from ..cli import describe
from ..evaluate.wer import text_normalizer
from ..inputs import AudioInput, open_audio
from ..options import TranscribeOptions
from ..transcribe import load_model
from .rows import SCHEMA, error_row, transcribed_row
from .sources import Item


@dataclass(frozen=True)
class ReplicaSpec:
    """How each replica loads its model and decodes: what the driver sends to every actor."""

    model: str  # a checkpoint folder every node can read
    options: TranscribeOptions
    device: str | None
    dtype: str | None
    compile: bool
    assistant: str | None
    threads: int  # torch threads: the CPUs the replica was given
    wer_threshold: float
    scored: bool  # some input has a reference: WER needs the normaliser (and the checkpoint's normalizer.json)


class Replica:
    def __init__(self, spec: ReplicaSpec):
        torch.set_num_threads(spec.threads)
        self.spec = spec
        self.transcriber = load_model(spec.model, device=spec.device, dtype=spec.dtype, compile=spec.compile, assistant=spec.assistant)
        self.plan = self.transcriber.plan(spec.options)
        self.normalize = text_normalizer(Path(spec.model), spec.options.language)[1] if spec.scored else str.strip
        self.parquet = ParquetRows()

    def __call__(self, batch: pa.Table) -> pa.Table:
        """A batch of Items -> their rows, typed as every part file is."""
        items = [Item(**record) for record in batch.to_pylist()]
        return pa.Table.from_pylist(self.transcribe(items), schema=SCHEMA)

    def transcribe(self, items: list[Item]) -> list[dict]:
        rows: list[dict | None] = [None] * len(items)
        opened: list[tuple[int, torch.Tensor | AudioStream]] = []
        for place, item in enumerate(items):
            try:
                opened.append((place, open_audio(self.parquet.audio(item) if item.row >= 0 else item.path, item.file)))
            except Exception as e:  # noqa: BLE001 - this input alone fails
                rows[place] = error_row(item, failure(item, e))
        started = time.perf_counter()
        outcomes = list(self.transcriber.outcomes(((None, audio) for _, audio in opened), self.plan, self.spec.options))
        elapsed = time.perf_counter() - started
        durations = [duration(audio) for _, audio in opened]
        audio_seconds = sum(d or 0.0 for d in durations) or 1.0
        for (place, _), outcome, seconds in zip(opened, outcomes, durations):
            item = items[place]
            if isinstance(outcome, Exception):
                rows[place] = error_row(item, failure(item, outcome))
            else:
                share = elapsed * (seconds or 0.0) / audio_seconds
                rows[place] = transcribed_row(item, outcome, seconds, share, self.normalize, self.spec.wer_threshold)
        return [row for row in rows if row is not None]


def duration(audio: torch.Tensor | AudioStream) -> float | None:
    return len(audio) / SAMPLE_RATE if isinstance(audio, torch.Tensor) else audio.duration


def failure(item: Item, error: Exception) -> str:
    """One line naming the input once."""
    reason = describe(error)
    return reason if item.file in reason else f"{item.file}: {reason}"


class ParquetRows:
    """Rows' audio from parquet files, a row group at a time: consecutive items of a batch share their row group, and
    a replica's batches mostly follow each other through a file."""

    def __init__(self) -> None:
        self.key: tuple[str, str, int] | None = None  # (file, column, row group) held in `group`
        self.group: list = []
        self.first = 0  # the file's row number of group[0]

    def audio(self, item: Item) -> AudioInput:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        reader = pq.ParquetFile(item.path)
        first = 0
        for group in range(reader.metadata.num_row_groups):
            if item.row < first + reader.metadata.row_group(group).num_rows:
                break
            first += reader.metadata.row_group(group).num_rows
        if (item.path, item.column, group) != self.key:
            self.group = reader.read_row_group(group, columns=[item.column]).column(item.column).to_pylist()
            self.key, self.first = (item.path, item.column, group), first
        return self.group[item.row - self.first]
