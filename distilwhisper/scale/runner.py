"""The job: INPUT's items not yet in the output folder, streamed by Ray Data through a pool of model replicas, their
rows written by this process (the driver) as they come.

    items (sources) -> skip ids already written (store) -> Ray Data: map_batches(Replica), an actor pool
      -> the driver iterates the results -> part files, written whole, each id once (store) -> a summary

Why exactly once holds through faults: Ray restarts a killed replica and retries its batch, and a lost node's work is
redone elsewhere, so a batch may come back twice; the driver alone writes, and it writes an id once. A driver killed
mid-job loses only the rows it had not written yet: running the command again reads the ids on disk and does the rest.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..cli import DEFAULT_MODEL
from ..errors import DistilWhisperError
from ..evaluate.wer import text_normalizer
from ..options import TranscribeOptions
from ..plan import make_plan
from ..tokenizer import load_tokenizer
from ..weights import load_dims, load_generation_defaults, resolve_model_dir
from .job import JobSpec, check_or_record, weights_hash
from .replica import Replica, ReplicaSpec
from .sources import SCALE_EXTRA, Item, read_items
from .store import Store

@dataclass(frozen=True)
class ScaleOptions:
    """A job's options besides INPUT; `options` are the decoding options every replica uses."""

    output: str
    model: str = DEFAULT_MODEL
    options: TranscribeOptions = field(default_factory=TranscribeOptions)
    address: str | None = None  # None: start a local Ray (unless this process already joined one); "auto" or HOST:PORT
    replicas: tuple[int, int] = (1, 1)  # the actor pool's least and most replicas
    gpus_per_replica: float | None = None  # None: 1 when the cluster has GPUs, else 0
    cpus_per_replica: float = 1.0
    device: str | None = None  # None: cuda when the replica has a GPU, else cpu
    dtype: str | None = None
    compile: bool = False
    assistant: str | None = None
    wer_threshold: float = 10.0  # percent: a row is kept when its WER is below it
    columns: tuple[str, str] | None = None
    limit: int | None = None
    part_seconds: float = 10.0  # a part file at least this often while rows come (and at every part_rows rows)
    part_rows: int = 1000


@dataclass
class Summary:
    """Where a job stands: what `progress` is called with after each part file, and what the job returns."""

    output: str
    inputs: int  # rows INPUT has
    skipped: int  # already in the output folder when this run started
    done: int = 0  # written by this run, failures included
    failed: int = 0  # rows with an error in the output folder, an earlier run's included
    audio_seconds: float = 0.0  # transcribed by this run
    elapsed: float = 0.0  # seconds this run has taken
    wer: float | None = None  # corpus WER of every transcribed row with a reference (at the end)
    kept: int = 0
    kept_wer: float | None = None  # of the rows the WER filter keeps (at the end)
    missing: int = 0  # inputs with no row at the end (a failed run: resume it)

    @property
    def speed(self) -> float:
        """Audio seconds per second of this run."""
        return self.audio_seconds / self.elapsed if self.elapsed else 0.0


def transcribe_dataset(source: str, options: ScaleOptions, progress: Callable[[Summary], None] | None = None) -> Summary:
    """Transcribe every input of `source` (a manifest or parquet files) not yet in `options.output` into parquet
    part files there, on a Ray cluster; see docs/scale.md. Bad INPUT, a model that does not load, options that do
    not fit it, or a folder made by a job with other ones are one-line DistilWhisperErrors before any work."""
    started = time.monotonic()
    items = read_items(source, options.columns, options.limit)
    model_dir = resolve_model_dir(options.model)
    # Options that do not fit the checkpoint are refused here, not by every replica as it starts (no weights read).
    make_plan(options.options, load_tokenizer(model_dir), load_generation_defaults(model_dir), load_dims(model_dir))
    # WER needs the checkpoint's spelling map (normalizer.json) only when there is a reference to score against.
    scored = any(item.reference for item in items)
    normalizer = text_normalizer(model_dir, options.options.language)[0] if scored else "none"
    spec = JobSpec(str(model_dir), weights_hash(model_dir), options.options, options.assistant, options.dtype,
                   options.compile, options.wer_threshold, options.columns, normalizer)  # fmt: skip
    output = Path(options.output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DistilWhisperError(f"cannot create output folder {output}: {e.strerror or e}") from None
    check_or_record(output, spec)
    store = Store(output)
    wanted = {item.id for item in items}
    pending = [item for item in items if item.id not in store.ids]
    summary = Summary(str(output), len(items), len(items) - len(pending), failed=store.failed)
    if pending:
        run_on_ray(pending, spec, options, store, summary, started, progress)
    return finish(summary, store, wanted, started)


def run_on_ray(items: list[Item], spec: JobSpec, options: ScaleOptions, store: Store, summary: Summary, started: float,
               progress: Callable[[Summary], None] | None) -> None:  # fmt: skip
    try:
        import ray
    except ImportError:
        raise DistilWhisperError(f"the scale runner needs Ray, which is not installed: {SCALE_EXTRA}") from None
    ours = not ray.is_initialized()  # shut down only a Ray this call started
    if ours:
        ray.init(address=options.address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        # a generator: closing it shuts the execution down (replicas too) when the loop is left early
        batches = iter(pipeline(ray, items, spec, options).iter_batches(batch_size=None, batch_format="pyarrow"))
        buffered: list[dict] = []
        last = float("-inf")  # the first rows are written as soon as they come, later ones every part_seconds
        try:
            for batch in batches:
                buffered += batch.to_pylist()
                if len(buffered) >= options.part_rows or time.monotonic() - last >= options.part_seconds:
                    flush(store, buffered, summary, started, progress)
                    buffered, last = [], time.monotonic()
        finally:  # interrupted or not, the rows received are written, and the replicas stopped
            batches.close()
            flush(store, buffered, summary, started, None)
    finally:
        if ours:
            ray.shutdown()


def pipeline(ray, items: list[Item], spec: JobSpec, options: ScaleOptions):
    """The Ray Data plan: the items in blocks of a batch, through an actor pool of replicas. Ray Data's own defaults
    for actor pools restart a replica that dies and retry its batches without end (max_restarts=-1,
    max_task_retries=-1): the fault tests hold it to that."""
    gpus = options.gpus_per_replica
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    batch_size = options.options.batch_size or (16 if gpus else 8)
    replica = ReplicaSpec(spec.model, options.options, options.device or ("cuda" if gpus else "cpu"), options.dtype,
                          options.compile, options.assistant, max(1, int(options.cpus_per_replica)), options.wer_threshold,
                          spec.normalizer != "none")  # fmt: skip
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # our own progress line instead
    context.print_on_execution_start = False
    blocks = max(1, -(-len(items) // batch_size))  # a block a batch: rows stream out as each batch is done
    dataset = ray.data.from_items([asdict(item) for item in items], override_num_blocks=blocks)
    low, high = options.replicas
    return dataset.map_batches(
        Replica, fn_constructor_args=(replica,), batch_size=batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high),
        num_cpus=options.cpus_per_replica, num_gpus=gpus,
    )  # fmt: skip


def flush(store: Store, rows: list[dict], summary: Summary, started: float, progress: Callable[[Summary], None] | None) -> None:
    written = store.write(rows)
    summary.done += len(written)
    summary.failed = store.failed
    summary.audio_seconds += sum(row["duration"] or 0.0 for row in written)
    summary.elapsed = time.monotonic() - started
    if written and progress:
        progress(summary)


def finish(summary: Summary, store: Store, wanted: set[str], started: float) -> Summary:
    """The figures over the whole output folder: failures, the WER of all rows and of kept rows, what is missing."""
    errors = words = kept_errors = kept_words = failed = kept = 0
    present = set()
    for row in store.rows(["id", "error", "word_errors", "reference_words", "keep"]):
        present.add(row["id"])
        failed += row["error"] is not None
        errors, words = errors + (row["word_errors"] or 0), words + (row["reference_words"] or 0)
        if row["keep"]:
            kept += 1
            kept_errors, kept_words = kept_errors + row["word_errors"], kept_words + row["reference_words"]
    summary.failed, summary.kept, summary.missing = failed, kept, len(wanted - present)
    summary.wer = 100 * errors / words if words else None
    summary.kept_wer = 100 * kept_errors / kept_words if kept_words else None
    summary.elapsed = time.monotonic() - started
    return summary
