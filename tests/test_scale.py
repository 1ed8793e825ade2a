"""The scale runner (`distilwhisper.scale`) on a local Ray of two CPUs that this module starts and stops: every input
once, equal to single-process transcribe, through a killed replica, a driver stopped part-way and a bad file; the WER
filter against a hand computation. Random tiny checkpoints wherever the model does not matter.

The two-node cluster losing a node is test_scale_cluster.py's; what needs no Ray (job.json, part files, INPUT) is
test_scale_store.py's.
"""

import os
import signal
import wave
from pathlib import Path

import numpy as np
import pytest

from helpers import AUDIO_DIR, BASE_MODEL, needs_shared

ray = pytest.importorskip("ray", reason='Ray is not installed: pip install "distilwhisper[scale]"')
pq = pytest.importorskip("pyarrow.parquet")

from distilwhisper.scale import ScaleOptions, transcribe_dataset  # noqa: E402
from distilwhisper.evaluate.normalizer import EnglishTextNormalizer, load_spelling_map  # noqa: E402
from distilwhisper.evaluate.wer import corpus_wer  # noqa: E402

# whisper-base's WER % on these (docs/evaluate.md): 0, 0, 5.26, 80 -> a threshold of 6 keeps three.
REAL_FILES = ["short/jfk_inaugural_11s.wav", "short/pocketsphinx_goforward.wav", "short/librivox_sense_and_sensibility_0920.wav",
              "short/cmu_arctic_prompts_cathy_a0110.wav"]  # fmt: skip
TINY = dict(max_new_tokens=6, language="en")  # random weights: a few tokens a file is all these tests need


@pytest.fixture(scope="module")
def local_ray():
    assert not ray.is_initialized()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    yield
    ray.shutdown()


def write_manifest(folder: Path, files: list[Path], references: list[str] | None = None) -> Path:
    lines = ["file\treference_text"] + [f"{f}\t{r}" for f, r in zip(files, references or [""] * len(files))]
    (folder / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.tsv"


def noise_files(folder: Path, n: int) -> list[Path]:
    """n WAV files of 0.5 to 2 s of quiet noise: audio a random checkpoint transcribes as well as any."""
    generator = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"noise_{i:03d}.wav"
        with wave.open(str(path), "wb") as f:
            f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
            f.writeframes((generator.normal(0, 0.05, int(16000 * (0.5 + 1.5 * generator.random()))) * 32767).astype("<i2").tobytes())
        paths.append(path)
    return paths


def output_rows(folder: Path) -> list[dict]:
    return [row for part in sorted(folder.glob("part-*.parquet")) for row in pq.read_table(part).to_pylist()]


def by_id(rows: list[dict]) -> dict[str, dict]:
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), "an input has two rows"
    return {row["id"]: row for row in rows}


def tiny_job(random_checkpoint, tmp_path, n, **options):
    model = random_checkpoint(0, tokenizer="base")
    files = noise_files(tmp_path, n)
    return model, files, write_manifest(tmp_path, files), ScaleOptions(str(tmp_path / "out"), str(model), **options)


@pytest.fixture(scope="module")
def base_job(local_ray, tmp_path_factory):
    """whisper-base on four real short files, two replicas, two files a batch, WER threshold 6."""
    if not (BASE_MODEL / "model.safetensors").exists():
        pytest.skip(f"real fixtures not found at {BASE_MODEL}")
    import csv

    from distilwhisper import TranscribeOptions

    with open(AUDIO_DIR / "manifest.tsv", newline="") as f:
        references = {r["file"]: r["reference_text"] for r in csv.DictReader(f, delimiter="\t")}
    folder = tmp_path_factory.mktemp("base-job")
    manifest = write_manifest(folder, [AUDIO_DIR / f for f in REAL_FILES], [references[f] for f in REAL_FILES])
    options = ScaleOptions(str(folder / "out"), str(BASE_MODEL), TranscribeOptions(language="en", batch_size=2), replicas=(2, 2),
                           wer_threshold=6.0)  # fmt: skip
    return transcribe_dataset(str(manifest), options), output_rows(folder / "out")


@needs_shared
def test_every_row_once_and_equal_to_single_process_transcribe(base_job, base_model):
    """Oracle: Transcriber.transcribe on each file alone, in this process."""
    _, rows = base_job
    rows = by_id(rows)
    assert sorted(rows) == sorted(str(AUDIO_DIR / f) for f in REAL_FILES)
    for file in REAL_FILES:
        expected = base_model.transcribe(AUDIO_DIR / file, language="en")
        row = rows[str(AUDIO_DIR / file)]
        assert (row["text"], row["tokens"], row["error"]) == (expected.text, expected.tokens, None), file
        assert row["duration"] > 2 and row["seconds"] > 0 and row["language"] == "en"


@needs_shared
def test_the_wer_filter_is_distil_whispers_by_hand(base_job):
    """Hand computation: the English normaliser on both sides, jiwer per row and over the rows, keep = WER < 6."""
    summary, rows = base_job
    normalize = EnglishTextNormalizer(load_spelling_map(BASE_MODEL))
    pairs = {row["id"]: (normalize(row["reference"]), normalize(row["text"])) for row in rows}
    for row in rows:
        assert row["wer"] == pytest.approx(corpus_wer(*([side] for side in pairs[row["id"]])))
        assert row["keep"] == (row["wer"] < 6.0)
    kept = [pairs[row["id"]] for row in rows if row["keep"]]
    assert len(kept) == summary.kept == 3  # one row over the threshold, one under but not at 0: the filter is doing something
    assert summary.wer == pytest.approx(corpus_wer(*map(list, zip(*pairs.values()))))
    assert summary.kept_wer == pytest.approx(corpus_wer(*map(list, zip(*kept))))


def test_a_bad_file_is_one_error_row_and_its_batch_still_done(local_ray, random_checkpoint, tmp_path):
    model, files, _, _ = tiny_job(random_checkpoint, tmp_path, 4)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really audio")
    inputs = files[:2] + [garbage, tmp_path / "missing.wav"] + files[2:]
    manifest = write_manifest(tmp_path, inputs)
    from distilwhisper import TranscribeOptions

    options = ScaleOptions(str(tmp_path / "out"), str(model), TranscribeOptions(**TINY, batch_size=len(inputs)))
    summary = transcribe_dataset(str(manifest), options)  # one batch: the bad ones among the good
    rows = by_id(output_rows(tmp_path / "out"))
    assert sorted(rows) == sorted(map(str, inputs)) and summary.failed == 2 and summary.missing == 0
    for bad in (garbage, tmp_path / "missing.wav"):
        error = rows[str(bad)]["error"]
        assert str(bad) in error and "\n" not in error and rows[str(bad)]["text"] is None
    assert all(rows[str(f)]["error"] is None and rows[str(f)]["tokens"] for f in files)


def replica_pids() -> list[int]:
    """The live Ray Data replicas' process ids (the public state API needs the dashboard, which these tests do not
    start; the GCS's actor table is what it reads)."""
    from ray._private import state

    return [a["Pid"] for a in state.actors().values() if a["State"] == "ALIVE" and "MapWorker" in a["ActorClassName"]]


def test_a_replica_killed_mid_job_and_every_row_still_once_and_exact(local_ray, random_checkpoint, tmp_path):
    """Oracle: the same checkpoint's transcribe in this process, file by file."""
    from distilwhisper import TranscribeOptions, load_model

    model, files, manifest, _ = tiny_job(random_checkpoint, tmp_path, 16)
    options = ScaleOptions(str(tmp_path / "out"), str(model), TranscribeOptions(**TINY, batch_size=2), part_seconds=0)
    killed = []

    def kill_first_replica(summary):
        if not killed:
            (pid,) = replica_pids()
            os.kill(pid, signal.SIGKILL)
            killed.append(summary.done)

    summary = transcribe_dataset(str(manifest), options, kill_first_replica)
    assert killed and killed[0] < len(files), "the kill came after the job had finished"
    rows = by_id(output_rows(tmp_path / "out"))
    assert summary.done == len(rows) == len(files) and summary.missing == summary.failed == 0
    transcriber = load_model(model, device="cpu")
    for file in files:
        assert rows[str(file)]["tokens"] == transcriber.transcribe(file, **TINY).tokens


def test_a_resume_after_the_driver_is_killed_adds_only_the_missing_rows(local_ray, random_checkpoint, tmp_path):
    """The command as a driver of its own on this module's Ray, killed (SIGKILL) once its first part file is on disk;
    the same job run again here."""
    import subprocess
    import sys
    import time

    from distilwhisper import TranscribeOptions

    model, files, manifest, _ = tiny_job(random_checkpoint, tmp_path, 30)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "distilwhisper.scale", str(manifest), "--output", str(out), "--model", str(model),
               "--address", ray.get_runtime_context().gcs_address, "--batch-size", "2", "--max-new-tokens", "6", "--language", "en"]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob("part-*.parquet")) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    driver.kill()  # its first rows are written at once, the next ones 10 s later: it dies in between
    driver.wait()
    first = {part: part.read_bytes() for part in out.glob("part-*.parquet")}
    done_before = len(output_rows(out))
    assert 0 < done_before < len(files)
    (out / ".part-000099.parquet.x1.tmp").write_bytes(b"PAR1 torn")  # as a kill mid-write leaves it

    options = ScaleOptions(str(out), str(model), TranscribeOptions(**TINY, batch_size=2))
    summary = transcribe_dataset(str(manifest), options)
    rows = by_id(output_rows(out))
    assert sorted(rows) == sorted(map(str, files)) and summary.missing == 0
    assert (summary.skipped, summary.done) == (done_before, len(files) - done_before)
    assert all(part.read_bytes() == data for part, data in first.items()), "a resume rewrote a part"
    assert not list(out.glob("*.tmp"))
    assert transcribe_dataset(str(manifest), options).done == 0  # a finished job: nothing to do
