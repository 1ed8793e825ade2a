"""What every benchmark shares: where things are, timing and peak memory, one definition per engine, the table and
the JSON out. The scripts run from a checkout without installing the package: it is imported from beside bench/.

Engines, each built once and then called many times on the same input as every other engine:
- `ours`: distilwhisper's `transcribe` (short or long audio, any options);
- `transformers_generate`: WhisperForConditionalGeneration.generate(), greedy, eager or static cache + compile;
- `transformers_pipeline`: the ASR pipeline, chunked (long audio), greedy;
- `faster_whisper`: faster-whisper on a CTranslate2 copy of the checkpoint (`faster_whisper_model`), greedy.
"""

import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OUT = ROOT / "bench" / "out"  # ignored by git: converted and random checkpoints, synthetic audio, reports
sys.path.insert(0, str(ROOT))  # the package beside this folder, installed or not

import torch  # noqa: E402

EOT = 50257
PROMPT = [50258, 50259, 50359, 50363]  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>
# WhisperConfig fields of the checkpoints drawn at random.
DIMS = {
    "distil-large-v2": dict(d_model=1280, encoder_layers=32, decoder_layers=2, encoder_attention_heads=20,
                            decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=80),
    "large-v2": dict(d_model=1280, encoder_layers=32, decoder_layers=32, encoder_attention_heads=20,
                     decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=80),
    "base": dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                 decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, num_mel_bins=80),
    "tiny-2dec": dict(d_model=96, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                      decoder_attention_heads=4, encoder_ffn_dim=192, decoder_ffn_dim=192, num_mel_bins=80),
}  # fmt: skip
# The CPU's faster modes, each engine's own: ours in bfloat16 (where the CPU computes it natively) and int8
# (load_model(dtype=...)), faster-whisper's compute_type int8.
PRECISION_ENGINES = {"distilwhisper-bf16": "bfloat16", "distilwhisper-int8": "int8", "faster-whisper-int8": "int8"}
TOKENIZER_FILES = ["added_tokens.json", "merges.txt", "normalizer.json", "preprocessor_config.json",
                   "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.json"]  # fmt: skip


# --- timing and memory ------------------------------------------------------------------------------------------


class Clock:
    """Wall time of device work: synchronises before reading the host clock."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, fn: Callable, runs: int, statistic: Callable = statistics.median, warm_up: bool = True) -> float:
        """The median (or `statistic`) of the seconds `runs` calls take, after one warm-up call."""
        if warm_up:
            fn()
        times = []
        for _ in range(runs):
            self.sync()
            start = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return statistic(times)


class PeakGpuMemory:
    """The most GPU memory allocated from now on, beyond what is allocated now: one system's own, loading included."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)

    def mib(self) -> float | None:
        """None off CUDA."""
        if self.device.type != "cuda":
            return None
        return (torch.cuda.max_memory_allocated(self.device) - self.before) / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- engines ----------------------------------------------------------------------------------------------------


def ours(model: str, device: str = "cpu", dtype: str = "float32", compile: bool = False, assistant: str | None = None,
         **options) -> Callable:  # fmt: skip
    """`run(audio) -> Transcription`: load_model once, then transcribe with `options` (TranscribeOptions' fields)."""
    import distilwhisper

    transcriber = distilwhisper.load_model(model, device=device, dtype=dtype, compile=compile, assistant=assistant)
    return lambda audio: transcriber.transcribe(audio, **options)


def transformers_generate(model: str, device: str, dtype: torch.dtype, max_new_tokens: int, static: bool = False,
                          initial_prompt: str | None = None, **generate_options):  # fmt: skip
    """(`run(samples) -> token rows`, `encode(samples) -> audio features`) of generate(), greedy English
    transcription, for (batch, samples) or a list of 1-D samples: features by transformers' extractor on the
    device, then `generate(..., num_beams=1)`; `static`: a static cache and torch.compile, as transformers does it.
    `generate_options` go to generate() as they are (min_new_tokens for equal work)."""
    from oracle import hf_tokens
    from transformers import CompileConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

    # dtype by .to(): transformers before 4.56 would take a dtype= argument for a config field and ignore it
    network = WhisperForConditionalGeneration.from_pretrained(model, attn_implementation="sdpa").to(device=device, dtype=dtype).eval()
    extractor = WhisperFeatureExtractor(feature_size=network.config.num_mel_bins)
    # A random checkpoint (bench/gpu.py's) has no tokenizer: its tokens are compared, not its text.
    tokenizer = WhisperTokenizerFast.from_pretrained(model) if (Path(model) / "tokenizer.json").exists() else None
    options = dict(generate_options)
    if initial_prompt is not None and tokenizer is not None:
        options["prompt_ids"] = tokenizer.get_prompt_ids(initial_prompt, return_tensors="pt").to(device)
    if static:  # transformers compiles the forward itself for a static cache; off CUDA only when told to
        compile_config = CompileConfig()
        compile_config._compile_all_devices = torch.device(device).type != "cuda"  # a private switch: no public one exists
        options |= dict(cache_implementation="static", compile_config=compile_config)

    def features(samples) -> torch.Tensor:
        rows = [torch.as_tensor(s).numpy() for s in samples]
        return extractor(rows, sampling_rate=16000, return_tensors="pt", device=str(device)).input_features.to(device, dtype)

    @torch.inference_mode()
    def run(samples) -> list[list[int]]:
        rows = hf_tokens(network, features(samples), max_new_tokens=max_new_tokens, **options)
        if tokenizer is not None:
            tokenizer.batch_decode(rows, skip_special_tokens=True)  # the text, as a user gets it
        return rows

    @torch.inference_mode()
    def encode(samples) -> torch.Tensor:
        return network.model.encoder(features(samples)).last_hidden_state

    return run, encode


def transformers_pipeline(model: str, device: str, dtype: str, batch_size: int, chunk_length_s: float | None = 15,
                          return_timestamps: bool | str = False, **generate_kwargs) -> Callable:  # fmt: skip
    """`run(audio) -> text` of the ASR pipeline, 15 s chunks (None: a short input whole), `batch_size` chunks a call,
    greedy English (its own default would be 5 beams: num_beams is named), `return_timestamps` as the pipeline takes
    it (True, "word")."""
    from transformers import pipeline

    chunking = {} if chunk_length_s is None else {"chunk_length_s": chunk_length_s}
    pipe = pipeline("automatic-speech-recognition", model=model, batch_size=batch_size, device=device,
                    dtype=getattr(torch, dtype), **chunking)  # fmt: skip
    options = {"language": "en", "task": "transcribe", "num_beams": 1} | generate_kwargs
    timestamps = {"return_timestamps": return_timestamps} if return_timestamps else {}

    def run(audio) -> str:
        audio = audio if isinstance(audio, str) else {"raw": audio, "sampling_rate": 16000}
        return pipe(audio, generate_kwargs=options, **timestamps)["text"]

    return run


def faster_whisper(model: str, threads: int, max_new_tokens: int, initial_prompt: str | None = None,
                   compute_type: str = "float32", **options) -> Callable:  # fmt: skip
    """`run(samples) -> token rows` of faster-whisper on the CPU, one input at a time, greedy English, no
    timestamps, no VAD; `options` add to or override its transcribe() arguments (gpu.py suppresses the end token)."""
    network = faster_whisper_model(model, threads, compute_type)
    arguments = dict(language="en", task="transcribe", beam_size=1, temperature=0.0, without_timestamps=True,
                     condition_on_previous_text=False, vad_filter=False, max_new_tokens=max_new_tokens,
                     initial_prompt=initial_prompt) | options  # fmt: skip

    def run(samples) -> list[list[int]]:
        rows = []
        for row in samples:
            segments, _ = network.transcribe(torch.as_tensor(row).numpy(), **arguments)
            rows.append([token for segment in segments for token in segment.tokens])
        return rows

    return run


def faster_whisper_model(model: str, threads: int, compute_type: str = "float32"):
    """faster-whisper's WhisperModel on the CPU for `model`, on a CTranslate2 copy of the checkpoint: converted once
    into bench/out/ (ct2-transformers-converter)."""
    from faster_whisper import WhisperModel

    ct2_dir = OUT / f"ct2-{Path(model).name}"
    if not (ct2_dir / "model.bin").exists():
        converter = str(Path(sys.executable).parent / "ct2-transformers-converter")
        subprocess.run([converter, "--model", model, "--output_dir", str(ct2_dir), "--force",
                        "--copy_files", "tokenizer.json", "preprocessor_config.json"], check=True, capture_output=True)  # fmt: skip
    # Left to itself CTranslate2 takes 4 threads even on a 2-core machine: every engine gets the same count, told.
    return WhisperModel(str(ct2_dir), device="cpu", compute_type=compute_type, cpu_threads=threads)


def with_tokenizer(path: Path, tokenizer: Path, folder: Path) -> Path:
    """`path`'s checkpoint (linked, not copied) with `tokenizer`'s files, which the pipeline and `transcribe` need,
    and a generation config suppressing every special token: random weights emit them (the pipeline would read them
    as timestamps or text), and the end token among them would end chunks early on one side and not the other."""
    from transformers import GenerationConfig

    from distilwhisper.weights import load_dims

    folder.mkdir(parents=True, exist_ok=True)
    for file in path.iterdir():
        if file.name != "generation_config.json" and not (folder / file.name).exists():
            (folder / file.name).symlink_to(file.resolve())
    for name in TOKENIZER_FILES:
        if (tokenizer / name).exists() and not (folder / name).exists():
            shutil.copy(tokenizer / name, folder / name)
    generation = GenerationConfig.from_pretrained(path)
    generation.suppress_tokens = sorted(set(generation.suppress_tokens or []) | set(range(EOT, load_dims(path).n_vocab)))
    generation.save_pretrained(folder)
    return folder


# --- processes and reports --------------------------------------------------------------------------------------


def run_child(script: str, engine: str, passthrough: list[str]) -> dict | None:
    """`script --child engine ...` in its own process (so its peak memory is its own): its last stdout line, as JSON;
    None, with the reason on stderr, when it failed."""
    proc = subprocess.run([sys.executable, script, "--child", engine, *passthrough], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"{engine}: failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def versions() -> dict:
    found = {"torch": torch.__version__, "python": sys.version.split()[0]}
    for name in ("transformers", "faster_whisper", "ctranslate2"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            pass
    return found


def print_table(title: str, rows: list[dict]) -> None:
    """A title and the rows as `|`-separated columns, floats to three places."""
    print(f"\n{title}")
    if rows:
        print(" | ".join(rows[0]))
        for row in rows:
            print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))


def emit(report: dict, json_path: str | None) -> None:
    """The report as the output's last line, and into `json_path` when given."""
    print(json.dumps(report))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
