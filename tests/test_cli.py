"""The command line: batches of files, one readable line per failure, atomic output files."""

import json
import subprocess
import sys

import pytest

from conftest import AUDIO_DIR, BASE_MODEL, needs_shared
from distilwhisper import load_model
from distilwhisper.cli import main, write_atomically

SHORT = AUDIO_DIR / "short"
GOOD = [SHORT / "jfk_inaugural_11s.wav", SHORT / "pocketsphinx_goforward.wav", SHORT / "mfa_whisper.wav"]


@pytest.fixture(scope="module")
def expected_texts():
    """What the Python API says for the good files: the CLI must print exactly that."""
    if not BASE_MODEL.exists():
        pytest.skip(f"real fixtures not found at {BASE_MODEL}")
    return [r.text.strip() for r in load_model(BASE_MODEL).transcribe(GOOD)]


@needs_shared
def test_prints_one_line_per_file_in_order(capsys, expected_texts):
    assert main([*map(str, GOOD), "--model", str(BASE_MODEL), "--batch-size", "2"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == expected_texts and err == ""


@needs_shared
def test_failures_are_one_line_each_and_the_rest_still_finishes(tmp_path, capsys, expected_texts):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_text("this is not audio")
    files = [GOOD[0], tmp_path / "missing.wav", corrupt, GOOD[1], GOOD[2]]
    code = main([*map(str, files), "--model", str(BASE_MODEL), "--output-dir", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 2 and "missing.wav" in lines[0] and "corrupt.wav" in lines[1]
    assert all(line.startswith("distilwhisper: error: ") for line in lines)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"{p.stem}.txt" for p in GOOD)  # and no temporary files left behind
    assert (tmp_path / "out" / f"{GOOD[1].stem}.txt").read_text() == expected_texts[1] + "\n"


@needs_shared
def test_json_output(tmp_path, capsys, expected_texts):
    assert main([str(GOOD[0]), "--model", str(BASE_MODEL), "--output-format", "json", "--output-dir", str(tmp_path)]) == 0
    record = json.loads((tmp_path / f"{GOOD[0].stem}.json").read_text())
    assert record["text"] == expected_texts[0] and record["file"] == str(GOOD[0]) and record["tokens"]


@needs_shared
def test_bad_language_stops_before_any_work(capsys):
    assert main([str(GOOD[0]), "--model", str(BASE_MODEL), "--language", "xx"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "unknown language 'xx'" in err


def test_model_folder_without_config_is_one_line_exit_2(tmp_path, capsys):
    assert main(["speech.wav", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"distilwhisper: error: {tmp_path} is not a Whisper checkpoint folder: it has no config.json"]


def test_a_failed_write_leaves_neither_target_nor_temporary_file(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError):
        write_atomically(tmp_path / "out.txt", "text")
    assert list(tmp_path.iterdir()) == []


def test_module_entry_point_exits_nonzero_without_a_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "distilwhisper", "missing.wav", "--model", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr and len(run.stderr.splitlines()) == 1


@needs_shared
def test_inputs_with_the_same_name_do_not_overwrite_each_other(tmp_path, capsys, expected_texts):
    other = tmp_path / "elsewhere"
    other.mkdir()
    clash = other / GOOD[1].name
    clash.write_bytes(GOOD[0].read_bytes())  # same file name, different speech
    code = main([str(GOOD[1]), str(clash), "--model", str(BASE_MODEL), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1 and "would overwrite that of" in err
    assert (tmp_path / "out" / f"{GOOD[1].stem}.txt").read_text() == expected_texts[1] + "\n"
