"""bench/gpu.py, the one command for the rare day a GPU is lent, run end to end on the CPU with tiny dims
(`--small`): every unit it has must measure, and none may fail, so that no lease is lost to a broken script.
(Its numbers are not checked: timings never live in tests.)"""

import json
import subprocess
import sys
from pathlib import Path

from helpers import BASE_MODEL

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_bench_measures_every_unit_on_the_cpu(tmp_path):
    tokenizer = ["--tokenizer", str(BASE_MODEL)] if (BASE_MODEL / "tokenizer.json").exists() else []
    command = [sys.executable, str(ROOT / "bench" / "gpu.py"), "--small", "--device", "cpu", "--batches", "1",
               "--tokens", "6", "--runs", "1", "--out", str(tmp_path), *tokenizer,
               "--systems", "transformers eager", "ours eager", "ours compiled"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert (tmp_path / "gpu.md").read_text().startswith("# bench/gpu.py")

    assert report["parity"]["tiny-2dec"]["torch.float32"]["identical"]
    timing = {row["system"]: row for row in report["timing"]}
    assert set(timing) == {"transformers eager", "ours eager", "ours compiled"}
    assert all("error" not in row and "skipped" not in row for row in timing.values()), timing
    assert all(row["tokens_per_row"] == [6] for row in timing.values())

    long_form = report["long_form"]["tiny-2dec"]
    if tokenizer:
        assert [row["system"] for row in long_form] == ["transformers pipeline", "ours eager", "ours compiled"]
        assert all("error" not in row and row["same_text_as_pipeline"] for row in long_form), long_form
    else:  # a fresh clone without ../shared: the unit says what it lacks
        assert "no tokenizer files" in long_form[0]["error"]

    speculative = report["speculative"]["tiny-2dec"]
    assert "error" not in speculative, speculative
    assert speculative["cost"] and speculative["controlled"]  # controlled_table asserts each decode equals greedy
