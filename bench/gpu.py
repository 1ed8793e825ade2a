"""One command for the day a GPU is lent: parity on the device, then every engine timed on the same weights.

    python bench/gpu.py                                  # CUDA: full-size random checkpoints, ~8 min on an H100
    python bench/gpu.py --small                          # the same code on the CPU with tiny dims, ~2-4 min
    python bench/gpu.py --device cpu --model ../shared/models/whisper-base --audio ../shared/audio/short/*.wav

Runs from the repository root without installing distilwhisper (it imports the tree beside it); needs torch
and transformers, and faster-whisper only for its CPU row. With no `--model` it draws random checkpoints
(distil-large-v2 and whisper-large-v2 dims, or tiny ones with `--small`) from a seed into the HF layout, so
we and transformers load the same files. Only the long-form unit needs a tokenizer's files (--tokenizer):
a GPU machine has none, so copy them there beside the tree (see bench/RESULTS.md, "GPU").

1. Parity: fp32 greedy tokens against transformers' generate (TF32 off), then the run dtype (fp16 on CUDA):
   identical, or the agreement and, at each first difference, the fp32 logit margin between the two choices.
2. Timing, one process, same weights and samples, equal work (the end token suppressed until --tokens are
   generated): transformers eager (SDPA), transformers static cache + torch.compile, ours eager, ours
   compiled, faster-whisper on the CPU. Per system: encoder ms per 30 s window, decoder µs per step,
   end-to-end latency, audio s per s, peak memory, ratios; the roofline of the decoder step (bytes it must
   read / step time against measured copy bandwidth) and of the encoder (FLOPs / time against measured
   matmul rate).

Writes OUT/gpu.md and OUT/gpu.json after every measured unit, so a run cut short keeps what it measured;
stops starting new units past --budget-s. Then, as time allows: for a checkpoint of at most 2 decoder layers
(distil-large-v2), chunked long-form at batch 16 (the transformers ASR pipeline against our transcribe, eager
and compiled, on 320 s of synthetic audio, equal work); for one with more (large-v2), speculative decoding with a 2-layer
student of it as the draft (bench/speculative.py's cost and controlled-acceptance tables, batch 1 and 4).
"""

import argparse
import gc
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]  # the tree's package, the oracle, short_form

from oracle import hf_greedy_tokens, save_random_whisper  # noqa: E402

from distilwhisper.audio import N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram  # noqa: E402
from distilwhisper.compiled import compiled_steps, eager_steps  # noqa: E402
from distilwhisper.decoding import SuppressAtBegin, SuppressTokens, greedy_decode  # noqa: E402
from distilwhisper.errors import first_line  # noqa: E402
from distilwhisper.weights import load_dims, load_generation_defaults, load_whisper  # noqa: E402

PROMPT = [50258, 50259, 50359, 50363]  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>
EOT = 50257
DIMS = {  # WhisperConfig fields of the checkpoints drawn at random
    "distil-large-v2": dict(d_model=1280, encoder_layers=32, decoder_layers=2, encoder_attention_heads=20,
                            decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=80),
    "large-v2": dict(d_model=1280, encoder_layers=32, decoder_layers=32, encoder_attention_heads=20,
                     decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=80),
    "base": dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                 decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, num_mel_bins=80),
    "tiny-2dec": dict(d_model=96, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                      decoder_attention_heads=4, encoder_ffn_dim=192, decoder_ffn_dim=192, num_mel_bins=80),
}
# Random weights with logits spread wide enough that fp32 argmax has no near-ties, yet fp16 activations
# stay far from overflow through 32 layers.
INIT_STD = 0.05
SYSTEMS = ["transformers eager", "transformers static+compile", "ours eager", "ours compiled", "faster-whisper"]
LONG_FORM_SYSTEMS = ["transformers pipeline", "ours eager", "ours compiled"]
LONG_FORM_SECONDS, LONG_FORM_BATCH = 320.0, 16  # 15 s chunks every 10 s: 32 chunks, two full batches
# Where the long-form unit looks for tokenizer files when --tokenizer is not given: the base fixture beside the
# repository, else a folder that travels to a GPU machine when carried (bench/out/ is ignored by git).
DEFAULT_TOKENIZERS = [ROOT.parent / "shared" / "models" / "whisper-base", ROOT / "bench" / "out" / "tokenizer"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="timing dtype (default: float16 on CUDA, float32 on the CPU)")
    parser.add_argument("--dims", nargs="+", default=None, choices=sorted(DIMS), help="random checkpoints to draw")
    parser.add_argument("--model", default=None, help="an existing HF checkpoint folder instead of random ones")
    parser.add_argument("--audio", nargs="*", default=None, help="audio files to time (default: seeded noise)")
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="default: 1 16 (--small: 1 4)")
    parser.add_argument("--tokens", type=int, default=None, help="tokens each sequence generates, the end token "
                        "suppressed until then: equal work (default: 128; --small: 16)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs after one warm-up, median kept (default: 3; --small: 2)")
    parser.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS)
    parser.add_argument("--budget-s", type=float, default=480, help="start no new unit after this many seconds")
    parser.add_argument("--small", action="store_true", help="tiny dims, few tokens: the whole path on the CPU")
    parser.add_argument("--tokenizer", default=next((str(p) for p in DEFAULT_TOKENIZERS if (p / "tokenizer.json").exists()), None),
                        help="a folder with a Whisper tokenizer's files, for the long-form unit (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "gpu"))
    args = parser.parse_args()
    small = args.small
    args.dims = args.dims or (["tiny-2dec"] if small else ["distil-large-v2", "large-v2"])
    args.batches = args.batches or ([1, 4] if small else [1, 16])
    args.tokens, args.runs = args.tokens or (16 if small else 128), args.runs or (2 if small else 3)
    args.dtype = getattr(torch, args.dtype) if args.dtype else torch.float16 if args.device.startswith("cuda") else torch.float32
    return args


class Clock:
    """Wall time of device work: synchronises before reading the host clock."""

    def __init__(self, device: torch.device):
        self.device = device

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, fn: Callable, runs: int, statistic: Callable = statistics.median) -> float:
        """The median (or `statistic`) of the seconds `runs` calls take, after one warm-up call."""
        fn()
        times = []
        for _ in range(runs):
            self.sync()
            start = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return statistic(times)


def measure_ceilings(device: torch.device, dtype: torch.dtype, clock: Clock) -> dict:
    """Copy bandwidth (bytes read + written) and matmul rate, measured here, on random data: each the best of
    10 calls, since a ceiling is the most the device gave (a median of a few short calls once caught a 2-core
    VM at a third of its matmul rate, and the encoder then ran at 180% of that "ceiling")."""
    numel = (1 << 28 if device.type == "cuda" else 1 << 26)  # 1 GiB / 256 MiB of fp32
    src, dst = torch.randn(numel, device=device), torch.empty(numel, device=device)
    copy_s = clock.time(lambda: dst.copy_(src), 10, min)
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    mm_s = clock.time(lambda: a @ b, 10, min)
    return {"copy_GBps": 2 * numel * 4 / copy_s / 1e9, "matmul_TFLOPs": 2 * n**3 / mm_s / 1e12, "matmul_dtype": str(dtype)}


def encoder_flops(dims) -> float:
    """Multiply-adds x 2 of one 30 s window: the conv stem, then per layer projections, attention and MLP."""
    frames, ctx, d = 2 * dims.n_audio_ctx, dims.n_audio_ctx, dims.d_model
    stem = 2 * dims.n_mels * 3 * d * frames + 2 * d * 3 * d * ctx
    layer = 4 * 2 * ctx * d * d + 2 * 2 * ctx * ctx * d + 2 * 2 * ctx * d * dims.encoder_ffn
    return stem + dims.encoder_layers * layer


def decoder_step_bytes(dims, element_size: int, batch: int, positions: int) -> int:
    """What one step must read: the decoder weights that act per token (per layer the self-attention's four
    projections, the cross-attention's query and output ones, the MLP; then the vocabulary projection; not
    the cross-attention key/value projections, used once per audio) and the caches' filled keys/values."""
    d = dims.d_model
    weights = dims.decoder_layers * (6 * d * d + 2 * d * dims.decoder_ffn) + dims.n_vocab * d
    caches = batch * dims.decoder_layers * 2 * (dims.n_audio_ctx + positions) * d
    return (weights + caches) * element_size


def our_rules(path: Path, equal_work: bool) -> list:
    defaults = load_generation_defaults(path)
    rules = [SuppressTokens(defaults.suppress_tokens), SuppressAtBegin(defaults.begin_suppress_tokens)]
    return rules + [SuppressTokens([EOT])] if equal_work else rules


def load_transformers(path: Path, device: torch.device, dtype: torch.dtype):
    from transformers import WhisperForConditionalGeneration

    # dtype by .to(): transformers before 4.56 would take a dtype= argument for a config field and ignore it
    return WhisperForConditionalGeneration.from_pretrained(path, attn_implementation="sdpa").to(device=device, dtype=dtype).eval()


def common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def first_difference_margins(reference, ours: list[list[int]], theirs: list[list[int]], mel: torch.Tensor) -> list[dict]:
    """Where the rows part, how far apart the two choices are in the fp32 model's logits (near 0: a near-tie)."""
    found = []
    for row, (a, b) in enumerate(zip(ours, theirs)):
        at = common_prefix(a, b)
        if at == min(len(a), len(b)):
            continue  # equal, or one stopped where the other went on: no two choices to compare
        tokens = torch.tensor([PROMPT + a[:at]], device=mel.device)
        with torch.inference_mode():
            logits = reference(mel[row : row + 1].float(), tokens)[0, -1]
        found.append({"row": row, "position": at, "margin": abs(float(logits[a[at]] - logits[b[at]]))})
    return found


def parity(path: Path, device: torch.device, dtype: torch.dtype, samples: torch.Tensor, tokens: int) -> dict:
    """Greedy tokens, ours vs transformers' generate, in fp32 and in `dtype`, on the same log-mel."""
    report, reference = {}, load_whisper(path, dtype=torch.float32, device=device)
    mel = log_mel_spectrogram(samples.to(device), reference.dims.n_mels)
    for run_dtype in dict.fromkeys([torch.float32, dtype]):
        ours = reference if run_dtype == torch.float32 else load_whisper(path, dtype=run_dtype, device=device)
        theirs = load_transformers(path, device, run_dtype)
        features = mel.to(run_dtype)
        with torch.inference_mode():
            got = greedy_decode(ours, ours.encoder(features), PROMPT, EOT, our_rules(path, False), tokens).tokens
            expected = hf_greedy_tokens(theirs, features, max_new_tokens=tokens)
        report[str(run_dtype)] = {
            "identical": got == expected,
            "rows_identical": sum(a == b for a, b in zip(got, expected)) / len(got),
            "agreeing_prefix": sum(map(common_prefix, got, expected)) / max(1, sum(map(max, map(len, got), map(len, expected)))),
            "first_differences": first_difference_margins(reference, got, expected, mel),
        }
        del ours, theirs
    del reference
    release(device)
    return report


def error_line(error: Exception) -> str:
    """A unit that failed, in one line: the exception's type and its message's first line."""
    return f"{type(error).__name__}: {first_line(error)}"


def release(device: torch.device) -> None:
    # Compiled systems' graphs (and, on CUDA, their graph memory pools) live in dynamo's caches until reset.
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def our_system(path, device, dtype, compiled: bool, tokens: int):
    """`run(samples)` -> token rows, `encode(samples)` -> features: the whole path, log-mel on the device."""
    model = load_whisper(path, dtype=dtype, device=device)
    steps = compiled_steps(model) if compiled else eager_steps(model)
    rules = our_rules(path, True)

    def features(samples):
        return log_mel_spectrogram(samples.to(device), model.dims.n_mels).to(dtype)

    @torch.inference_mode()
    def run(samples):
        mel = features(samples)
        return greedy_decode(model, steps.encoder(mel), PROMPT, EOT, rules, tokens, decoder_step=steps.decoder).tokens

    @torch.inference_mode()
    def encode(samples):
        return steps.encoder(features(samples))

    return run, encode


def transformers_system(path, device, dtype, static: bool, tokens: int):
    from transformers import CompileConfig, WhisperFeatureExtractor

    model = load_transformers(path, device, dtype)
    extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    options = dict(min_new_tokens=tokens)
    if static:  # transformers compiles the forward itself for a static cache; off CUDA only when told to
        compile_config = CompileConfig()
        compile_config._compile_all_devices = device.type != "cuda"  # a private switch: no public one exists
        options |= dict(cache_implementation="static", compile_config=compile_config)

    def features(samples):
        mel = extractor(samples.numpy(), sampling_rate=SAMPLE_RATE, return_tensors="pt", device=str(device)).input_features
        return mel.to(device, dtype)

    @torch.inference_mode()
    def run(samples):
        return hf_greedy_tokens(model, features(samples), max_new_tokens=tokens, **options)

    @torch.inference_mode()
    def encode(samples):
        return model.model.encoder(features(samples)).last_hidden_state

    return run, encode


def faster_whisper_system(path, device, dtype, tokens: int):
    from short_form import faster_whisper_engine

    # faster-whisper 1.2.1 (CTranslate2 4.8.5) stops at (prompt + max_new_tokens) / 2 tokens, measured: 66 for
    # max_new_tokens=128 after the 4-token prompt. Ask for what makes `tokens`, and check that it did.
    engine_args = argparse.Namespace(model=str(path), threads=torch.get_num_threads(), max_new_tokens=2 * tokens - 4,
                                     initial_prompt=None)
    transcribe = faster_whisper_engine(engine_args, suppress_tokens=[-1, EOT])  # -1: the model's own list

    def run(samples):
        counts = [transcribe(row.numpy()) for row in samples]
        if counts != [tokens] * len(samples):
            raise RuntimeError(f"faster-whisper decoded {counts} tokens, not {tokens}: not the same work")
        return [[0] * count for count in counts]  # token counts: its text is its own

    return run, None


class PeakGpuMemory:
    """The most GPU memory allocated from now on, beyond what is allocated now: one system's own, loading included."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.before = torch.cuda.memory_allocated(device)

    def mib(self) -> float | None:
        """None off CUDA."""
        if self.device.type != "cuda":
            return None
        return (torch.cuda.max_memory_allocated(self.device) - self.before) / 2**20


def time_system(name, path, device, dtype, samples, args, clock, ceilings) -> dict:
    """Load, one first call (compilation), then timed calls. The encoder column includes the log-mel features
    (both are per-window work); the decoder column is the rest of the latency over the tokens generated."""
    peak = PeakGpuMemory(device)
    start = time.perf_counter()
    if name.startswith("ours"):
        run, encode = our_system(path, device, dtype, name == "ours compiled", args.tokens)
    elif name.startswith("transformers"):
        run, encode = transformers_system(path, device, dtype, "static" in name, args.tokens)
    else:
        run, encode = faster_whisper_system(path, device, dtype, args.tokens)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    rows = run(samples)  # the first call compiles, where there is anything to compile
    first_call_s = time.perf_counter() - start
    latency = clock.time(lambda: run(samples), args.runs)
    encoder_s = clock.time(lambda: encode(samples), args.runs) if encode else None
    batch, audio_s = len(samples), len(samples) * N_SAMPLES / SAMPLE_RATE
    result = {
        "system": name, "batch": batch, "tokens_per_row": [len(r) for r in rows], "load_s": load_s,
        "first_call_s": first_call_s, "latency_s": latency, "audio_s_per_s": audio_s / latency,
        "encoder_ms_per_window": encoder_s * 1e3 / batch if encoder_s else None,
        "decoder_us_per_step": (latency - encoder_s) * 1e6 / args.tokens if encoder_s else None,
        "peak_gpu_mib": peak.mib(),
        "rows": rows if name != "faster-whisper" else None,
    }  # fmt: skip
    if encoder_s:  # the same weights for every system: the same bytes and FLOPs
        dims = load_dims(path)
        step_bytes = decoder_step_bytes(dims, torch.finfo(dtype).bits // 8, batch, len(PROMPT) + args.tokens // 2)
        step_s = result["decoder_us_per_step"] / 1e6
        result["roofline"] = {
            "decoder_bytes_per_step": step_bytes,
            "decoder_floor_us": step_bytes / (ceilings["copy_GBps"] * 1e9) * 1e6,
            "decoder_GBps": step_bytes / step_s / 1e9,
            "decoder_fraction_of_copy_bw": step_bytes / step_s / 1e9 / ceilings["copy_GBps"],
            "encoder_TFLOPs": encoder_flops(dims) * batch / encoder_s / 1e12,
            "encoder_fraction_of_matmul": encoder_flops(dims) * batch / encoder_s / 1e12 / ceilings["matmul_TFLOPs"],
        }
    del run, encode
    release(device)
    return result


def long_form(path: Path, args, device: torch.device, clock: Clock, workdir: Path) -> list[dict]:
    """Chunked long-form at batch 16, from the samples to the text, on one synthetic noise file of LONG_FORM_SECONDS
    (bench/long_form.py's): the transformers ASR pipeline (15 s chunks, its own feature extractor) against our
    `transcribe` (15 s chunks, log-mel on the device), eager and compiled, each loaded in this process, called
    once (compiling), then timed. Equal work: in a copy of the checkpoint whose generation config suppresses
    every special token, the end token included, every chunk decodes --tokens tokens on both sides."""
    from long_form import distilwhisper_engine, synthetic_wav, transformers_engine

    from distilwhisper.audio import load_audio

    if args.tokenizer is None:
        return [{"system": "all", "error": "no tokenizer files: pass --tokenizer, or copy a Whisper checkpoint's "
                 f"tokenizer files into {DEFAULT_TOKENIZERS[-1]} (and carry it to the GPU machine)"}]  # fmt: skip
    folder = with_tokenizer(path, Path(args.tokenizer), workdir / f"{path.name}-long-form")
    # The decoded samples, not the file: the pipeline would need an ffmpeg binary, which a GPU machine may lack.
    audio = load_audio(synthetic_wav(LONG_FORM_SECONDS, args.seed))
    engine_args = argparse.Namespace(model=str(folder), device=str(device), dtype=str(args.dtype).removeprefix("torch."),
                                     batch=LONG_FORM_BATCH, max_new_tokens=args.tokens)  # fmt: skip
    rows = []
    for system in LONG_FORM_SYSTEMS:
        peak = PeakGpuMemory(device)
        try:
            start = time.perf_counter()
            run = (transformers_engine(engine_args) if system == "transformers pipeline"
                   else distilwhisper_engine(engine_args, compile=system == "ours compiled"))  # fmt: skip
            load_s = time.perf_counter() - start
            start = time.perf_counter()
            text = run(audio)
            first_call_s = time.perf_counter() - start
            latency = clock.time(lambda: run(audio), args.runs)
            rows.append({"system": system, "batch": LONG_FORM_BATCH, "audio_s": LONG_FORM_SECONDS, "load_s": load_s,
                         "first_call_s": first_call_s, "latency_s": latency, "audio_s_per_s": LONG_FORM_SECONDS / latency,
                         "peak_gpu_mib": peak.mib(), "words": len(text.split()), "text": text})  # fmt: skip
        except Exception as e:  # noqa: BLE001 - one system failing must not lose the others' numbers
            rows.append({"system": system, "error": error_line(e)})
        run = None  # this system's model, freed before the next one's peak memory is measured
        release(device)
    pipeline = next((r for r in rows if r["system"] == "transformers pipeline" and "latency_s" in r), None)
    for r in rows:
        if pipeline and "latency_s" in r:
            r["speedup_vs_pipeline"] = pipeline["latency_s"] / r["latency_s"]
            r["same_text_as_pipeline"] = r["text"] == pipeline["text"]
    return rows


def with_tokenizer(path: Path, tokenizer: Path, folder: Path) -> Path:
    """`path`'s checkpoint (linked, not copied) with `tokenizer`'s files, which the pipeline and `transcribe` need,
    and a generation config suppressing every special token: random weights emit them, and the end token among
    them would end chunks early on one side and not the other."""
    from transformers import GenerationConfig

    from long_form import TOKENIZER_FILES

    folder.mkdir(exist_ok=True)
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


def speculative(path: Path, args, device: torch.device) -> dict:
    """bench/speculative.py's two tables with this checkpoint as the main model and two of its decoder layers
    (first and last) as the draft: for large-v2, a distil-large-v2-sized student over the same encoder.
    Costs of a draft step and of verify passes; full decodes (end token suppressed) at controlled hit rates,
    each checked equal to plain greedy; batch 1 and 4, eager steps."""
    from speculative import controlled_table, cost_table, student_of

    model = load_whisper(path, dtype=args.dtype, device=device)
    draft = student_of(model)
    mel = log_mel_spectrogram(noise(4, args.seed + 3).to(device), model.dims.n_mels).to(args.dtype)
    with torch.inference_mode():
        features = model.encoder(mel)
    options = argparse.Namespace(batches=[1, 4], ks=[1, 4] if args.small else [1, 2, 4, 8, 16],
                                 rates=[0.9] if args.small else [0.7, 0.9, 0.95],
                                 max_new_tokens=min(args.tokens, 64), runs=args.runs, seed=args.seed)  # fmt: skip
    report = {
        "cost": cost_table(model, draft, lambda batch: features[:batch], options, device),
        "controlled": controlled_table(model, draft, lambda batch: features[:batch], our_rules(path, True), options, device),
    }
    del model, draft, features
    release(device)
    return report


def noise(batch: int, seed: int) -> torch.Tensor:
    """Seeded speech-level noise, 30 s per row: random weights make any input as good as speech."""
    return 0.1 * torch.randn(batch, N_SAMPLES, generator=torch.Generator().manual_seed(seed))


def audio_batch(files: list[str], batch: int) -> torch.Tensor:
    from distilwhisper.audio import load_audio, pad_or_trim

    return torch.stack([pad_or_trim(torch.from_numpy(load_audio(files[i % len(files)]))) for i in range(batch)])


def checkpoints(args, device: torch.device, workdir: Path):
    """(name, folder) pairs: the given checkpoint, or random ones drawn on the device and saved in fp16 on
    CUDA (half the bytes to write; fp32 parity loads both sides from the same fp16-representable weights)."""
    if args.model:
        yield Path(args.model).name, Path(args.model)
        return
    for name in args.dims:
        start = time.perf_counter()
        folder = save_random_whisper(workdir / name, args.seed, device=str(device), init_std=INIT_STD,
                                     dtype=torch.float16 if device.type == "cuda" else None, **DIMS[name])  # fmt: skip
        release(device)
        print(f"{name}: drawn and saved in {time.perf_counter() - start:.1f} s", flush=True)
        yield name, folder


def add_ratios(results: list[dict]) -> None:
    """Each system's latency against each other's at the same batch ('vs X' > 1: faster than X), and whether
    its tokens are those of every other system (equal work: all of them decode the same N tokens)."""
    for r in results:
        peers = [p for p in results if p["model"] == r["model"] and p["batch"] == r["batch"] and "latency_s" in p]
        if "latency_s" in r:
            r["speedup_vs"] = {p["system"]: p["latency_s"] / r["latency_s"] for p in peers if p is not r}
            r["same_tokens_as"] = {p["system"]: p["rows"] == r["rows"] for p in peers if p is not r and p["rows"] and r["rows"]}


def same_tokens(compared: dict | None) -> str:
    return "-" if not compared else "yes" if all(compared.values()) else "NO: " + ", ".join(k for k, v in compared.items() if not v)


def markdown(report: dict) -> str:
    head = ("| model | batch | system | encoder ms / window | decoder µs / step | latency s | audio s / s | "
            "peak GPU MiB | decoder GB/s (of copy) | encoder TFLOP/s (of matmul) | first call s | vs transformers eager | "
            "same tokens as the others |")
    lines = [f"# bench/gpu.py — {report['device']} {report['dtype']}, {report['date']}", "",
             f"Ceilings: copy {report['ceilings']['copy_GBps']:.0f} GB/s, matmul {report['ceilings']['matmul_TFLOPs']:.2f} "
             f"TFLOP/s ({report['ceilings']['matmul_dtype']}). {report['tokens']} tokens per row (end token suppressed).",
             "", "## Parity", ""]  # fmt: skip
    for model, by_dtype in report["parity"].items():
        for dtype, p in by_dtype.items():
            margins = ", ".join(f"row {d['row']} @ {d['position']}: {d['margin']:.3g}" for d in p["first_differences"])
            lines.append(f"- {model} {dtype}: {'identical' if p['identical'] else 'differs'}; rows identical "
                         f"{p['rows_identical']:.0%}, agreeing prefix {p['agreeing_prefix']:.1%}"
                         + (f"; fp32 margins at first differences: {margins}" if margins else ""))  # fmt: skip
    lines += ["", "## Timing", "", head, "|" + " --- |" * (head.count("|") - 1)]
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for r in report["timing"]:
        if "error" in r or "skipped" in r:
            lines.append(f"| {r['model']} | {r['batch']} | {r['system']} | {r.get('error') or r['skipped']} |")
            continue
        roof = r.get("roofline", {})
        bw = f"{roof['decoder_GBps']:.1f} ({roof['decoder_fraction_of_copy_bw']:.0%})" if roof else "-"
        fl = f"{roof['encoder_TFLOPs']:.2f} ({roof['encoder_fraction_of_matmul']:.0%})" if roof else "-"
        vs = r.get("speedup_vs", {}).get("transformers eager")
        lines.append(f"| {r['model']} | {r['batch']} | {r['system']} | {fmt(r['encoder_ms_per_window'], '.1f')} | "
                     f"{fmt(r['decoder_us_per_step'], '.0f')} | {r['latency_s']:.3f} | {r['audio_s_per_s']:.1f} | "
                     f"{fmt(r['peak_gpu_mib'], '.0f')} | {bw} | {fl} | {r['first_call_s']:.1f} | {fmt(vs, '.2f')} | "
                     f"{same_tokens(r.get('same_tokens_as'))} |")  # fmt: skip
    for model, rows in report.get("long_form", {}).items():
        lines += ["", f"## Long-form: {model}, {LONG_FORM_SECONDS:.0f} s of synthetic audio, 15 s chunks, batch {LONG_FORM_BATCH}", "",
                  "| system | latency s | audio s / s | peak GPU MiB | first call s | vs the pipeline | same text as the pipeline |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['system']} | {r['error']} |")
                continue
            same = r.get("same_text_as_pipeline")
            lines.append(f"| {r['system']} | {r['latency_s']:.2f} | {r['audio_s_per_s']:.1f} | {fmt(r['peak_gpu_mib'], '.0f')} | "
                         f"{r['first_call_s']:.1f} | {fmt(r.get('speedup_vs_pipeline'), '.2f')} | "
                         f"{'-' if same is None else 'yes' if same else 'no'} |")  # fmt: skip
    for model, tables in report.get("speculative", {}).items():
        lines += ["", f"## Speculative decoding: {model} main, its layers 0 and -1 as the draft (eager)", ""]
        if "error" in tables:
            lines.append(f"- {tables['error']}")
            continue
        lines += ["| batch | k | greedy step ms | draft step ms | verify ms | verify / step |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {c['batch']} | {c['k']} | {c['greedy_step_ms']:.2f} | {c['draft_step_ms']:.2f} | {c['verify_ms']:.2f} | "
                  f"{c['verify_over_step']:.2f} |" for c in tables["cost"]]  # fmt: skip
        lines += ["", "| batch | hit rate | k | adaptive | acceptance | greedy s | speculative s | speed-up |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        lines += [f"| {c['batch']} | {c['hit_rate']} | {c['k']} | {c['adaptive']} | {c['acceptance']:.2f} | {c['greedy_s']:.3f} | "
                  f"{c['speculative_s']:.3f} | {c['speedup']:.2f}× |" for c in tables["controlled"]]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    import transformers

    transformers.logging.set_verbosity_error()  # its per-call notes on max_length would bury the progress lines
    started = time.perf_counter()
    device = torch.device(args.device)
    # fp32 means fp32: no TF32 in matmuls or convolutions, on either side.
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    clock = Clock(device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "gpu", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "dtype": str(args.dtype), "tokens": args.tokens, "runs": args.runs, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(sys.argv), "torch": torch.__version__, "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
        "ceilings": measure_ceilings(device, args.dtype, clock), "parity": {}, "timing": [],
    }  # fmt: skip

    def save() -> None:
        add_ratios(report["timing"])
        (out / "gpu.json").write_text(json.dumps(report, indent=1) + "\n")
        (out / "gpu.md").write_text(markdown(report))

    with tempfile.TemporaryDirectory() as workdir:
        for name, path in checkpoints(args, device, Path(workdir)):
            report["parity"][name] = parity(path, device, args.dtype, noise(4, args.seed + 1), min(args.tokens, 48))
            save()
            for batch in args.batches:
                samples = audio_batch(args.audio, batch) if args.audio else noise(batch, args.seed + 2)
                for system in args.systems:
                    unit = {"model": name, "batch": batch, "system": system}
                    if system == "faster-whisper" and (device.type != "cpu" or not args.model or batch != 1):
                        continue  # CPU only, a real checkpoint (it needs the tokenizer files), one input at a time
                    if time.perf_counter() - started > args.budget_s:
                        report["timing"].append(unit | {"skipped": "time budget spent"})
                        continue
                    try:
                        report["timing"].append(unit | time_system(system, path, device, args.dtype, samples, args, clock, report["ceilings"]))
                    except Exception as e:  # noqa: BLE001 - one system failing must not lose the others' numbers
                        report["timing"].append(unit | {"error": error_line(e)})
                        release(device)
                    save()
                    print(f"{name} batch {batch} {system}: done at {time.perf_counter() - started:.0f} s", flush=True)
            # Long-form for the 2-layer decoders (distil-large-v2: the product's model), speculation for the others.
            if load_dims(path).decoder_layers <= 2 and time.perf_counter() - started < args.budget_s:
                report.setdefault("long_form", {})[name] = long_form(path, args, device, clock, Path(workdir))
                save()
                print(f"{name} long-form: done at {time.perf_counter() - started:.0f} s", flush=True)
            # A 2-layer decoder drafting for itself would say nothing; --small has only those.
            if (load_dims(path).decoder_layers > 2 or args.small) and time.perf_counter() - started < args.budget_s:
                try:
                    report.setdefault("speculative", {})[name] = speculative(path, args, device)
                except Exception as e:  # noqa: BLE001 - keep what was measured
                    report.setdefault("speculative", {})[name] = {"error": error_line(e)}
                    release(device)
                save()
                print(f"{name} speculative: done at {time.perf_counter() - started:.0f} s", flush=True)
    save()
    print(markdown(report))


if __name__ == "__main__":
    main()
