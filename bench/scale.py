"""The scale runner's overhead: `python -m distilwhisper.scale` with 1 and 2 replicas against one process running
`transcribe_each` on the same files, same checkpoint, same batch size, one torch thread per replica (and for the
single process), each in a child process of its own.

    python bench/scale.py                         # whisper-base, the short files of ../shared/audio, batch 4
    python bench/scale.py --audio ../shared/audio/long/*.wav --batch-size 8

Per configuration: the wall time from the call to the last row (a local Ray started, replicas started and loaded,
part files written), audio seconds per second over that, the seconds until the first row was on disk (the single
process: until its first batch was done), audio seconds per second from then on (the speed once started), and
the peak memory of the whole process tree (the driver and every Ray
process it started: GCS, raylet, workers), sampled every 0.1 s from /proc. On a CPU the point is the overhead, not a
speed-up: two replicas of one thread each should come close to twice one. Prints a table and, last, one JSON line
(also --json OUT).
"""

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from common import SHARED, emit, run_child, versions

CONFIGS = ["single", "ray-1", "ray-2"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "whisper-base"))
    parser.add_argument("--audio", nargs="+", default=sorted(map(str, (SHARED / "audio" / "short").glob("*.wav"))))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--configs", nargs="+", default=CONFIGS, choices=CONFIGS)
    parser.add_argument("--json", default=None, help="also write the JSON here")
    parser.add_argument("--child", default=None, choices=CONFIGS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


class TreeMemory:
    """The largest RSS sum over this process and all its descendants, sampled in a thread (Ray's processes are
    this process's children when it starts the local Ray; getrusage would not see the workers, grandchildren)."""

    def __init__(self, every: float = 0.1):
        self.peak_kib, self.every, self.done = 0, every, threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        while not self.done.is_set():
            self.peak_kib = max(self.peak_kib, sum(rss_kib(pid) for pid in descendants(os.getpid())))
            time.sleep(self.every)

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return self.peak_kib / 1024


def descendants(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the (name)
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def child(args: argparse.Namespace) -> dict:
    """One configuration, timed from the start of the work (the package imported already)."""
    from distilwhisper import TranscribeOptions

    options = TranscribeOptions(language="en", batch_size=args.batch_size)
    memory = TreeMemory()
    start = time.perf_counter()
    # (seconds since start, audio seconds done) when the first rows were done, and at the end
    first, audio_s = (single_process if args.child == "single" else on_ray)(args, options, start)
    wall_s = time.perf_counter() - start
    return {"config": args.child, "files": len(args.audio), "audio_s": audio_s, "wall_s": wall_s,
            "audio_s_per_s": audio_s / wall_s, "first_row_s": first[0],
            "steady_audio_s_per_s": (audio_s - first[1]) / (wall_s - first[0]) if wall_s > first[0] else None,
            "peak_tree_rss_mib": memory.stop()}  # fmt: skip


def single_process(args: argparse.Namespace, options, start: float) -> tuple[tuple[float, float], float]:
    """transcribe_each over the files; its first rows are its first batch (what a replica's first part holds)."""
    import torch

    from distilwhisper import load_model
    from distilwhisper.audio import audio_duration

    torch.set_num_threads(1)
    transcriber = load_model(args.model, device="cpu", dtype="float32")
    durations = [audio_duration(path) or 0.0 for path in args.audio]
    first = (0.0, 0.0)
    for n, outcome in enumerate(transcriber.transcribe_each(args.audio, **vars(options))):
        if isinstance(outcome, Exception):
            raise outcome
        if n == min(args.batch_size, len(args.audio)) - 1:
            first = (time.perf_counter() - start, sum(durations[: n + 1]))
    return first, sum(durations)


def on_ray(args: argparse.Namespace, options, start: float) -> tuple[tuple[float, float], float]:
    """The runner on a local Ray it starts, the files as a manifest; its first rows are its first part file."""
    from distilwhisper.scale import ScaleOptions, transcribe_dataset

    replicas = int(args.child.split("-")[1])
    first: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "manifest.tsv"
        manifest.write_text("file\n" + "".join(f"{Path(path).resolve()}\n" for path in args.audio))
        job = ScaleOptions(str(Path(folder) / "out"), args.model, options, replicas=(replicas, replicas), device="cpu")
        summary = transcribe_dataset(str(manifest), job, lambda s: first or first.append((time.perf_counter() - start, s.audio_seconds)))
    if summary.failed or summary.missing:
        raise RuntimeError(f"{summary.failed} failed, {summary.missing} missing")
    return first[0], summary.audio_seconds


def run(args: argparse.Namespace) -> dict:
    passthrough = ["--model", args.model, "--batch-size", str(args.batch_size), "--audio", *args.audio]
    rows = [result for name in args.configs if (result := run_child(__file__, name, passthrough))]
    single = next((r for r in rows if r["config"] == "single"), None)
    for row in rows:
        row["vs_single"] = row["audio_s_per_s"] / single["audio_s_per_s"] if single else None
    return {"benchmark": "scale", "model": args.model, "batch_size": args.batch_size, "cpus": os.cpu_count(),
            "versions": versions(), "results": rows}  # fmt: skip


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    report = run(args)
    rows = report["results"]
    print(f"{len(args.audio)} files, {rows[0]['audio_s']:.0f} s of audio, model {Path(args.model).name}, batch {args.batch_size}, "
          "one thread per replica")  # fmt: skip
    print(f"{'config':<8}{'wall s':>9}{'audio s/s':>11}{'vs single':>11}{'first row s':>13}{'then audio s/s':>16}{'peak MiB':>10}")
    for r in rows:
        ratio = f"{r['vs_single']:.2f}x" if r["vs_single"] else "-"
        steady = f"{r['steady_audio_s_per_s']:.1f}" if r["steady_audio_s_per_s"] else "-"
        print(f"{r['config']:<8}{r['wall_s']:>9.2f}{r['audio_s_per_s']:>11.1f}{ratio:>11}{r['first_row_s']:>13.2f}{steady:>16}"
              f"{r['peak_tree_rss_mib']:>10.0f}")  # fmt: skip
    emit(report, args.json)


if __name__ == "__main__":
    main()
