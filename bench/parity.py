"""Parity report: distilwhisper against transformers on your checkpoint and your audio.

    python bench/parity.py --model ../shared/models/whisper-base ../shared/audio/short/*.wav [--json out.json]

Per file, both engines decode the same input features (transformers' feature extractor) with the same
weights, greedy, fp32: our greedy_decode on our network against WhisperForConditionalGeneration.generate().
The report says whether the tokens are identical, else the first position where they differ, and the
largest logit difference when both networks are teacher-forced on the prompt + transformers' tokens.
Files over 30 s are compared on their first 30 s (generate()'s short-form input); long-form is tested
against the pipeline in tests/test_longform.py. Exit status 1 when any file differs or exceeds --tolerance, 2
without transformers.

tests/test_parity_report.py imports this module: the tests and users run the same comparison.
"""

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the package beside this folder

from distilwhisper.audio import N_SAMPLES, load_audio, pad_or_trim  # noqa: E402
from distilwhisper.cli import write_atomically  # noqa: E402
from distilwhisper.decoding import greedy_decode  # noqa: E402
from distilwhisper.transcribe import Transcriber, load_model  # noqa: E402
from distilwhisper.weights import resolve_model_dir  # noqa: E402

TOLERANCE = 1e-4  # max |logit difference| that still counts as equal, fp32 on the CPU


@dataclass
class Parity:
    """One input's comparison."""

    name: str
    ours: list[int]  # generated tokens up to (not including) the end token
    theirs: list[int]
    first_difference: int | None  # index into the generated tokens; None when identical
    max_logit_difference: float  # teacher-forced on prompt + theirs

    @property
    def identical(self) -> bool:
        return self.first_difference is None


def first_difference(ours: list[int], theirs: list[int]) -> int | None:
    """The first index where two token lists differ (a missing token counts); None when they are equal."""
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            return i
    return None if len(ours) == len(theirs) else min(len(ours), len(theirs))


def hf_generate(hf_model, features: torch.Tensor, prompt: list[int], eos: int, max_new_tokens: int, **kwargs) -> list[list[int]]:
    """transformers' greedy generate(), as token lists without the prompt and cut before the end token.

    Some transformers versions return the decoder prompt too, some only new tokens: strip it where it is.
    """
    out = hf_model.generate(features, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, **kwargs)
    rows = []
    for row in out.tolist():
        row = row[len(prompt) :] if row[: len(prompt)] == prompt else row
        rows.append(row[: row.index(eos)] if eos in row else row)
    return rows


def our_greedy(transcriber: Transcriber, features: torch.Tensor, prompt: list[int], max_new_tokens: int) -> list[list[int]]:
    """Our greedy tokens from given features, cut before the end token as hf_generate cuts them."""
    model, eot = transcriber.model, transcriber.tokenizer.eot
    decoded = greedy_decode(model, model.encoder(features), prompt, eot, transcriber.rules, max_new_tokens,
                            transcriber.tokenizer.no_speech)  # fmt: skip
    return [row[: row.index(eot)] if eot in row else row for row in decoded.tokens]


def max_logit_difference(transcriber: Transcriber, hf_model, features: torch.Tensor, tokens: list[int]) -> float:
    """max |ours - theirs| over every position's logits, both teacher-forced on the same tokens."""
    ids = torch.tensor([tokens])
    with torch.inference_mode():
        theirs = hf_model(input_features=features, decoder_input_ids=ids).logits
        ours = transcriber.model(features, ids)
    return (ours.float() - theirs.float()).abs().max().item()


def compare(transcriber: Transcriber, hf_model, features: torch.Tensor, names: list[str], prompt: list[int],
            max_new_tokens: int, **generate_kwargs) -> list[Parity]:  # fmt: skip
    """Both engines on a batch of features (batch, n_mels, 3000): one Parity per row."""
    with torch.inference_mode():
        ours = our_greedy(transcriber, features, prompt, max_new_tokens)
        theirs = hf_generate(hf_model, features, prompt, transcriber.tokenizer.eot, max_new_tokens, **generate_kwargs)
    return [
        Parity(name, a, b, first_difference(a, b), max_logit_difference(transcriber, hf_model, features[i : i + 1], prompt + b))
        for i, (name, a, b) in enumerate(zip(names, ours, theirs))
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="+", help="audio files (over 30 s: their first 30 s)")
    parser.add_argument("--model", required=True, help="a checkpoint folder, short name or hub repo id")
    parser.add_argument("--language", default=None,
                        help="passed to both; give it for multilingual checkpoints, where without it transformers "
                             "detects the language while our side takes distilwhisper's default prompt (default: none, "
                             "as English-only checkpoints need)")
    parser.add_argument("--task", default=None, choices=["transcribe", "translate"], help="passed to both")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: what the decoder holds")
    parser.add_argument("--device", default="cpu", help="both engines run here, in float32 (default: cpu)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="max |logit difference| (default: %(default)s)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:  # only here, so that --help works without it
        from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration
    except ModuleNotFoundError:
        print('bench/parity.py needs transformers: pip install "distilwhisper[bench]"', file=sys.stderr)
        return 2

    model_dir = resolve_model_dir(args.model)  # a short name or hub id, found once for both engines
    transcriber = load_model(model_dir, device=args.device, dtype="float32")
    hf_model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).to(args.device).eval()
    extractor = WhisperFeatureExtractor.from_pretrained(model_dir)
    prompt = transcriber.prompt(args.language, args.task, args.max_new_tokens)
    max_new_tokens = args.max_new_tokens or transcriber.default_max_new_tokens(prompt)
    options = {k: v for k, v in (("language", args.language), ("task", args.task)) if v is not None}

    reports = []
    print(f"{'tokens':>6}  {'parity':<22}  {'max |Δlogit|':>12}  file", flush=True)
    for path in args.audio:
        samples = pad_or_trim(load_audio(path), N_SAMPLES)
        features = extractor(samples, sampling_rate=16000, return_tensors="pt").input_features.to(args.device)
        (report,) = compare(transcriber, hf_model, features, [path], prompt, max_new_tokens, **options)
        verdict = "identical" if report.identical else f"differ at token {report.first_difference}"
        print(f"{len(report.theirs):>6}  {verdict:<22}  {report.max_logit_difference:12.2e}  {path}", flush=True)
        reports.append(report)
    identical = sum(r.identical for r in reports)
    worst = max(r.max_logit_difference for r in reports)
    ok = identical == len(reports) and worst <= args.tolerance
    print(f"{identical} of {len(reports)} files token-identical to transformers; max |logit difference| {worst:.2e} "
          f"({'within' if worst <= args.tolerance else 'over'} {args.tolerance:g})")  # fmt: skip
    if args.json:
        summary = {"model": str(args.model), "identical": identical, "files": len(reports), "max_logit_difference": worst,
                   "tolerance": args.tolerance, "ok": ok, "reports": [asdict(r) for r in reports]}  # fmt: skip
        write_atomically(Path(args.json), json.dumps(summary, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
