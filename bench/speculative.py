"""Speculative decoding: what one draft step and one verify pass cost, and what it gains at a known acceptance.

    python bench/speculative.py                          # whisper-base on this CPU, a student and the int8 self-draft
    python bench/speculative.py --random-dims large-v2   # whisper-large-v2 dims, distil-large-v2 dims draft (a GPU)
    python bench/speculative.py --json bench/out/speculative.json

Three parts, a table each, then one JSON line:
1. cost: one draft step (one token per row) and one main-decoder verify pass of k + 1 tokens, at each k,
   at batch 1 and 4, in milliseconds (median of --runs), with the plain greedy step (1 token) beside them.
2. controlled: full speculative decodes against plain greedy on the same audio features. The draft runs the
   real draft decoder (so it costs what a real one costs), then its choice is overridden: with probability p
   it is the main model's own greedy token at that position (read from a plain greedy run beforehand), else
   that token is banned, so the proposal is wrong. p is the per-proposal hit rate; the measured acceptance
   (accepted / proposed) is lower, since the proposals after a miss in a round are proposed and lost.
   With random weights the tokens are meaningless but the costs are real; every run decodes
   --max-new-tokens tokens (a random model rarely ends by itself).
3. real-speech (base only): the 2-layer student and the int8 copy of the main decoder as drafts on real speech,
   each under three draft-length schedules (SCHEDULES): measured acceptance and speed-up over plain greedy,
   batch 1, per file; a file longer than 30 s, per 30 s window (`file@60s` starts 60 s in), since full windows
   decode far more tokens than short clips and speculation pays only on long decodes.
Every speculative result is checked against plain greedy's tokens: a speed-up of a wrong decode is not one.
"""

import argparse
from pathlib import Path

import torch

from common import DIMS, EOT, PROMPT, SHARED, Clock, emit, print_table

from distilwhisper import load_audio, log_mel_spectrogram, pad_or_trim
from distilwhisper.audio import N_SAMPLES, SAMPLE_RATE
from distilwhisper.decoding import Decoding, SuppressAtBegin, SuppressTokens, WindowResult, greedy_decode
from distilwhisper.model import Decoder, ModelDims, Whisper
from distilwhisper.speculative import SELF_DRAFT, Assistant, Fixed, Heuristic, Schedule, load_assistant, speculative_decode
from distilwhisper.weights import load_generation_defaults, load_whisper

PARTS = ["cost", "controlled", "real-speech"]
NO_SPEECH = 50362
# Main models with random weights (--random-dims); the draft is always 2 of their decoder layers over the same encoder.
RANDOM_DIMS = {"large-v2": DIMS["large-v2"], "tiny": DIMS["tiny-2dec"] | {"decoder_layers": 4}}  # tiny: a smoke test
# How a round's number of proposals is chosen: transformers' heuristic (k from 5, +2 / -1), that plus stopping once
# the draft doubts every row's last proposal (transformers' assistant_confidence_threshold 0.4), a fixed k.
SCHEDULES = {"heuristic": Heuristic(), "heuristic + confidence 0.4": Heuristic(confidence=0.4), "fixed 4": Fixed(4)}
# The controlled part's schedules: the heuristic from 5, and fixed k.
CONTROLLED_SCHEDULES = [Heuristic(), Fixed(4), Fixed(8)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED / "models" / "whisper-base"))
    parser.add_argument("--random-dims", choices=sorted(RANDOM_DIMS), default=None,
                        help="random weights of these dims as the main model, 2 of its decoder layers over its encoder "
                             "as the draft (for large-v2: distil-large-v2's dims)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--audio", nargs="+", default=sorted(map(str, (SHARED / "audio" / "short").glob("*.wav")))[::9])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9, 0.95])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS)
    parser.add_argument("--json", default=None, help="also write the JSON here")
    return parser.parse_args(argv)


def student_of(model: Whisper, layers: tuple[int, ...] = (0, -1)) -> Decoder:
    """A draft decoder as Distil-Whisper initialises its student: the teacher's decoder, only some of its layers."""
    import copy

    decoder = copy.deepcopy(model.decoder)
    decoder.layers = torch.nn.ModuleList(decoder.layers[i] for i in layers)  # type: ignore[assignment]
    return decoder


def random_models(name: str, device, dtype, seed: int) -> tuple[Whisper, Decoder]:
    torch.manual_seed(seed)
    config = RANDOM_DIMS[name] | dict(max_source_positions=1500, max_target_positions=448, vocab_size=51865)
    with torch.device(device):
        model = Whisper(ModelDims.from_config(config)).to(dtype).eval().requires_grad_(False)
    return model, student_of(model)  # distil-large-v2: the teacher's encoder, 2 decoder layers


class ControlledDraft(torch.nn.Module):
    """A draft whose proposal is right with probability `hit_rate`: the real draft decoder runs (its cost is
    real), then at each output the main model's greedy token there (`reference`: prompt and greedy tokens
    by position) is made the argmax, or banned."""

    def __init__(self, decoder: Decoder, reference: torch.Tensor, hit_rate: float, seed: int):
        super().__init__()
        self.decoder, self.reference, self.hit_rate = decoder, reference, hit_rate
        self.generator = torch.Generator(device=reference.device).manual_seed(seed)

    def setup_caches(self, audio_features: torch.Tensor) -> None:
        self.decoder.setup_caches(audio_features)

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor, filled: int | None = None) -> torch.Tensor:
        logits = self.decoder(tokens, input_pos, filled)
        positions = (input_pos if input_pos.ndim == 2 else input_pos.expand(tokens.shape[0], -1)) + 1
        right = self.reference.gather(1, positions.clamp(max=self.reference.shape[1] - 1))
        hit = torch.rand(right.shape, generator=self.generator, device=right.device) < self.hit_rate
        value = torch.where(hit, 1e4, -1e4).to(logits.dtype)
        return logits.scatter(2, right[..., None], value[..., None])


def greedy(model: Whisper, features: torch.Tensor, rules: tuple, max_new_tokens: int) -> list[WindowResult]:
    model.decoder.setup_caches(features)
    return greedy_decode(model, [PROMPT] * len(features), Decoding(EOT, max_new_tokens, rules, NO_SPEECH))


def speculative(model: Whisper, assistant: Assistant, features: torch.Tensor, rules: tuple, max_new_tokens: int,
                schedule: Schedule) -> list[WindowResult]:  # fmt: skip
    model.decoder.setup_caches(features)
    assistant.setup_caches(model.decoder, features, features)  # the drafts here read the main model's features
    decoding = Decoding(EOT, max_new_tokens, rules, NO_SPEECH)
    return speculative_decode(model, assistant, [PROMPT] * len(features), decoding, schedule=schedule)


def greedy_reference(model, features, rules, max_new_tokens) -> tuple[list[list[int]], torch.Tensor]:
    """Plain greedy's tokens, and (batch, positions) prompt + tokens + end tokens for ControlledDraft."""
    tokens = [r.tokens for r in greedy(model, features, rules, max_new_tokens)]
    reference = torch.full((features.shape[0], model.dims.n_text_ctx + 1), EOT, device=features.device)
    for b, row in enumerate(tokens):
        reference[b, : len(PROMPT) + len(row)] = torch.tensor(PROMPT + row)
    return tokens, reference


def acceptance(results: list[WindowResult]) -> float:
    rates = [r.acceptance_rate for r in results if r.acceptance_rate is not None]
    return sum(rates) / len(rates) if rates else float("nan")


@torch.inference_mode()
def cost_table(model, draft: Decoder, features_of, args, device) -> list[dict]:
    rows, clock = [], Clock(device)
    for batch in args.batches:
        features = features_of(batch)
        model.decoder.setup_caches(features)
        draft.setup_caches(features)
        start = torch.full((batch, 100), 440, device=device)  # any tokens: a cost does not depend on them
        model.decoder(start, torch.arange(100, device=device), 100)
        draft(start, torch.arange(100, device=device), 100)
        step = clock.time(lambda: model.decoder(start[:, :1], torch.tensor([100], device=device), 101), args.runs)
        draft_step = clock.time(lambda: draft(start[:, :1], torch.full((batch, 1), 100, device=device), 101), args.runs)
        for k in args.ks:
            positions = (100 + torch.arange(k + 1, device=device)).expand(batch, -1)
            verify = clock.time(lambda: model.decoder(start[:, : k + 1], positions, 101 + k), args.runs)
            rows.append(dict(batch=batch, k=k, greedy_step_ms=step * 1e3, draft_step_ms=draft_step * 1e3,
                             verify_ms=verify * 1e3, verify_over_step=verify / step))
    return rows


def schedule_columns(schedule: Schedule) -> tuple[int, bool]:
    """(k of its first round, whether it adapts), as the tables print them."""
    return schedule.start, isinstance(schedule, Heuristic)


@torch.inference_mode()
def controlled_table(model, draft: Decoder, features_of, rules, args, device) -> list[dict]:
    rows, clock = [], Clock(device)
    for batch in args.batches:
        features = features_of(batch)
        expected, reference = greedy_reference(model, features, rules, args.max_new_tokens)
        plain = clock.time(lambda: greedy(model, features, rules, args.max_new_tokens), args.runs)
        for rate in args.rates:
            for schedule in CONTROLLED_SCHEDULES:
                assistant = Assistant(ControlledDraft(draft, reference, rate, args.seed))  # type: ignore[arg-type]
                results: list = []
                seconds = clock.time(lambda: results.append(speculative(model, assistant, features, rules, args.max_new_tokens, schedule)), args.runs)
                assert [r.tokens for r in results[-1]] == expected, "speculative decoding differed from plain greedy"
                k, adaptive = schedule_columns(schedule)
                rows.append(dict(batch=batch, hit_rate=rate, k=k, adaptive=adaptive, acceptance=acceptance(results[-1]),
                                 greedy_s=plain, speculative_s=seconds, speedup=plain / seconds))
    return rows


@torch.inference_mode()
def real_speech_table(model, draft: Decoder, rules, args) -> list[dict]:
    """Per file, batch 1, the real drafts (the 2-layer student, the int8 self-draft) under each schedule."""
    drafts = {"student": Assistant(draft), "int8": load_assistant(SELF_DRAFT, model)}
    rows, clock = [], Clock("cpu")
    for name, samples in (window for path in args.audio for window in windows(path)):
        mel = log_mel_spectrogram(pad_or_trim(samples), model.dims.n_mels)[None]
        features = model.encoder(mel)
        expected = [r.tokens for r in greedy(model, features, rules, args.max_new_tokens)]
        plain = clock.time(lambda: greedy(model, features, rules, args.max_new_tokens), args.runs)
        for draft_name, assistant in drafts.items():
            for schedule_label, schedule in SCHEDULES.items():
                results: list = []
                seconds = clock.time(lambda: results.append(speculative(model, assistant, features, rules, args.max_new_tokens, schedule)), args.runs)
                assert [r.tokens for r in results[-1]] == expected, f"{name}: the {draft_name} draft changed the output"
                rows.append(dict(file=name, tokens=len(expected[0]), draft=draft_name, schedule=schedule_label,
                                 acceptance=results[-1][0].acceptance_rate, greedy_s=plain, speculative_s=seconds,
                                 speedup=plain / seconds))  # fmt: skip
    return rows


def windows(path: str) -> list[tuple[str, torch.Tensor]]:
    """The file's samples, named after it; a file longer than 30 s, as its 30 s windows, named `file@<start>s`."""
    samples, name = torch.from_numpy(load_audio(path)), Path(path).name
    if len(samples) <= N_SAMPLES:
        return [(name, samples)]
    return [(f"{name}@{start // SAMPLE_RATE}s", samples[start : start + N_SAMPLES]) for start in range(0, len(samples), N_SAMPLES)]


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if args.random_dims:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        model, draft = random_models(args.random_dims, device, dtype, args.seed)
        rules: tuple = (SuppressTokens([EOT]), SuppressAtBegin([220]))  # random weights: run to --max-new-tokens
        generator = torch.Generator(device=device).manual_seed(args.seed)
        mel = torch.randn(max(args.batches), model.dims.n_mels, 3000, generator=generator, device=device, dtype=dtype)
    else:
        model = load_whisper(args.model, device=device)
        draft = student_of(model)
        defaults = load_generation_defaults(Path(args.model))
        rules = (SuppressTokens(defaults.suppress_tokens), SuppressAtBegin(defaults.begin_suppress_tokens))
        mels = [log_mel_spectrogram(pad_or_trim(torch.from_numpy(load_audio(p))), model.dims.n_mels) for p in args.audio]
        mel = torch.stack([mels[i % len(mels)] for i in range(max(args.batches))]).to(device)
    with torch.inference_mode():
        all_features = model.encoder(mel)

    def features_of(batch: int) -> torch.Tensor:
        return all_features[:batch]

    report = dict(device=str(torch.cuda.get_device_name() if device.type == "cuda" else "cpu"),
                  threads=torch.get_num_threads(), main=args.random_dims or args.model, max_new_tokens=args.max_new_tokens)
    if "cost" in args.parts:
        report["cost"] = cost_table(model, draft, features_of, args, device)
        print_table("one draft step and one verify pass of k + 1 tokens (ms)", report["cost"])
    if "controlled" in args.parts:
        report["controlled"] = controlled_table(model, draft, features_of, rules, args, device)
        print_table("full decodes at a controlled per-proposal hit rate (speed-up over plain greedy)", report["controlled"])
    if "real-speech" in args.parts and not args.random_dims and device.type == "cpu":
        report["real_speech"] = real_speech_table(model, draft, rules, args)
        print_table("the student and the int8 self-draft on real speech, batch 1, per draft-length schedule", report["real_speech"])
    return report


def main() -> None:
    args = parse_args()
    emit(run(args), args.json)


if __name__ == "__main__":
    main()
