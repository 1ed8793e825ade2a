"""The scale runner's parts that need no Ray: job.json refusing a resume with other options, part files (dedup by id,
torn files), parquet INPUT in Hugging Face datasets' layout read by a replica in this process, the WER filter's
strictness, and the core package never importing any of it."""

import io
import subprocess
import sys
import wave

import numpy as np
import pytest

from helpers import BASE_MODEL, ROOT, needs_shared

pa = pytest.importorskip("pyarrow", reason='pyarrow is not installed: pip install "distilwhisper[scale]"')
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("jiwer")

from distilwhisper import DistilWhisperError, TranscribeOptions  # noqa: E402
from distilwhisper.scale.command import main  # noqa: E402
from distilwhisper.scale.replica import Replica, ReplicaSpec  # noqa: E402
from distilwhisper.scale.rows import keeps  # noqa: E402
from distilwhisper.scale.runner import ScaleOptions, transcribe_dataset  # noqa: E402
from distilwhisper.scale.sources import read_items  # noqa: E402
from distilwhisper.scale.store import Store  # noqa: E402


def wav_bytes(seconds: float, seed: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes((np.random.default_rng(seed).normal(0, 0.05, int(16000 * seconds)) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def a_row(id: str) -> dict:
    return {"id": id, "file": id, "error": None, "keep": False}


def test_the_core_package_imports_no_ray():
    code = "import distilwhisper, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'pyarrow') or m.startswith('distilwhisper.scale')))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert run.stdout.strip() == "[]"


def test_a_resume_with_other_options_or_weights_is_refused_by_name(random_checkpoint, copied, tmp_path, capsys):
    model = copied(random_checkpoint(0, tokenizer="base"))
    (tmp_path / "m.tsv").write_text("file\nnot_there.wav\n")
    (tmp_path / "out").mkdir()
    Store(tmp_path / "out").write([a_row("not_there.wav")])  # the job is done: no Ray is needed to check it
    first = ScaleOptions(str(tmp_path / "out"), str(model), TranscribeOptions(language="en"))
    assert transcribe_dataset(str(tmp_path / "m.tsv"), first).done == 0
    with pytest.raises(DistilWhisperError, match='language="en", not "fr"'):
        transcribe_dataset(str(tmp_path / "m.tsv"), ScaleOptions(first.output, str(model), TranscribeOptions(language="fr")))
    capsys.readouterr()
    assert main([str(tmp_path / "m.tsv"), "--output", first.output, "--model", str(model), "--language", "en", "--timestamps"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "return_timestamps=false, not true" in err
    # batch size is how fast, not what: a resume may change it
    assert transcribe_dataset(str(tmp_path / "m.tsv"), ScaleOptions(first.output, str(model), TranscribeOptions(language="en", batch_size=3)))
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(DistilWhisperError, match="weights_sha256"):
        transcribe_dataset(str(tmp_path / "m.tsv"), first)


def test_parts_hold_each_id_once_and_torn_files_are_set_aside(tmp_path):
    store = Store(tmp_path)
    assert [r["id"] for r in store.write([a_row("a"), a_row("b"), a_row("a")])] == ["a", "b"]
    assert store.write([a_row("b")]) == [] and len(list(tmp_path.glob("part-*.parquet"))) == 1  # a retried batch
    (tmp_path / ".part-000001.parquet.abc.tmp").write_bytes(b"PAR1 half")
    again = Store(tmp_path)
    assert again.ids == {"a", "b"} and not list(tmp_path.glob("*.tmp"))
    (tmp_path / "part-000001.parquet").write_bytes(b"PAR1 half")  # not ours: refused, not read as rows
    with pytest.raises(DistilWhisperError, match="not a whole parquet file"):
        Store(tmp_path)


def test_parquet_rows_in_the_datasets_layout_are_read_by_a_replica(random_checkpoint, tmp_path):
    """Oracle: transcribe on the same bytes in this process. Two row groups, a row whose bytes are not audio."""
    from distilwhisper import load_model

    audio = [{"bytes": wav_bytes(1 + i / 4, i), "path": f"clip{i}.wav"} for i in range(4)]
    audio[2] = {"bytes": b"not audio", "path": "clip2.wav"}
    table = pa.table({"audio": audio, "sentence": ["one", "two", "three", "four"]})
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "train-00000.parquet", row_group_size=2)
    items = read_items(str(tmp_path / "data"))
    assert [(i.id, i.file, i.reference, i.row) for i in items] == [
        (f"{tmp_path / 'data' / 'train-00000.parquet'}:{n}", f"clip{n}.wav", text, n) for n, text in enumerate(["one", "two", "three", "four"])
    ]  # fmt: skip
    model = random_checkpoint(0, tokenizer="base")
    options = TranscribeOptions(language="en", max_new_tokens=6)
    replica = Replica(ReplicaSpec(str(model), options, "cpu", None, False, None, 1, 10.0, scored=False))
    rows = replica(pa.Table.from_pylist([vars(i) for i in items])).to_pylist()
    assert [r["id"] for r in rows] == [i.id for i in items]
    assert "clip2.wav" in rows[2]["error"] and rows[2]["text"] is None
    transcriber = load_model(model, device="cpu")
    for n in (0, 1, 3):
        assert rows[n]["tokens"] == transcriber.transcribe(audio[n]["bytes"], **vars(options)).tokens
        assert rows[n]["duration"] == pytest.approx(1 + n / 4)


def test_the_wer_filter_keeps_below_the_threshold_strictly():
    assert (keeps(9.99, 10.0), keeps(10.0, 10.0), keeps(None, 10.0)) == (True, False, False)


@needs_shared
def test_bad_input_is_one_line_before_any_work(tmp_path, capsys):
    assert main([str(tmp_path / "nope.tsv"), "--output", str(tmp_path / "out"), "--model", "x"]) == 2
    assert capsys.readouterr().err == f"distilwhisper: error: manifest not found: {tmp_path / 'nope.tsv'}\n"
    (tmp_path / "m.tsv").write_text("file\na.wav\n")
    assert main([str(tmp_path / "m.tsv"), "--output", str(tmp_path / "out"), "--model", str(BASE_MODEL), "--language", "xx"]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "out").exists()  # refused before Ray, by the checkpoint
    (tmp_path / "twice.tsv").write_text("file\na.wav\na.wav\n")
    with pytest.raises(DistilWhisperError, match="'a.wav' appears twice"):
        read_items(str(tmp_path / "twice.tsv"))
