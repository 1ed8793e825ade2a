"""Parity report: distilwhisper against transformers on your checkpoint and your audio.

    python bench/parity.py --model ../shared/models/whisper-base ../shared/audio/short/*.wav [--json out.json]

Per file, both engines decode the same input features (transformers' feature extractor) with the same
weights, fp32, greedy (or by beam search, --num-beams N): our decoding loop on our network against
WhisperForConditionalGeneration.generate().
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

import common  # noqa: F401 - the package beside this folder, installed or not

from distilwhisper import TranscribeOptions
from distilwhisper.audio import N_SAMPLES, load_audio, pad_or_trim
from distilwhisper.beam_search import beam_search
from distilwhisper.cli import write_atomically
from distilwhisper.decoding import greedy_decode
from distilwhisper.transcribe import Transcriber, load_model
from distilwhisper.weights import resolve_model_dir

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


def hf_generate(hf_model, features: torch.Tensor, prompt: list[int], eos: int, max_new_tokens: int, num_beams: int = 1,
                **kwargs) -> list[list[int]]:  # fmt: skip
    """transformers' generate(), greedy or with `num_beams`, as token lists without the prompt and cut before the end
    token.

    Some transformers versions return the decoder prompt too, some only new tokens: strip it where it is.
    """
    out = hf_model.generate(features, max_new_tokens=max_new_tokens, do_sample=False, num_beams=num_beams, **kwargs)
    rows = []
    for row in out.tolist():
        row = row[len(prompt) :] if row[: len(prompt)] == prompt else row
        rows.append(row[: row.index(eos)] if eos in row else row)
    return rows


def our_tokens(transcriber: Transcriber, features: torch.Tensor, prompt: list[int], max_new_tokens: int,
               num_beams: int = 1) -> list[list[int]]:  # fmt: skip
    """Our tokens from given features, greedy or with `num_beams`, cut before the end token as hf_generate cuts them."""
    model = transcriber.model
    model.decoder.setup_caches(model.encoder(features))
    plan = transcriber.plan(TranscribeOptions(num_beams=num_beams))  # the checkpoint's rules, length penalty...
    decoding, prompts = replace(plan.decoding, max_new_tokens=max_new_tokens), [prompt] * len(features)
    decoded = greedy_decode(model, prompts, decoding) if plan.beams is None else beam_search(model, prompts, decoding, plan.beams)
    return [r.tokens for r in decoded]


def max_logit_difference(transcriber: Transcriber, hf_model, features: torch.Tensor, tokens: list[int]) -> float:
    """max |ours - theirs| over every position's logits, both teacher-forced on the same tokens."""
    ids = torch.tensor([tokens])
    with torch.inference_mode():
        theirs = hf_model(input_features=features, decoder_input_ids=ids).logits
        ours = transcriber.model(features, ids)
    return (ours.float() - theirs.float()).abs().max().item()


def compare(transcriber: Transcriber, hf_model, features: torch.Tensor, names: list[str], prompt: list[int],
            max_new_tokens: int, num_beams: int = 1, **generate_kwargs) -> list[Parity]:  # fmt: skip
    """Both engines on a batch of features (batch, n_mels, 3000): one Parity per row."""
    with torch.inference_mode():
        ours = our_tokens(transcriber, features, prompt, max_new_tokens, num_beams)
        eot = transcriber.tokenizer.eot
        theirs = hf_generate(hf_model, features, prompt, eot, max_new_tokens, num_beams, **generate_kwargs)
    return [
        Parity(name, a, b, first_difference(a, b), max_logit_difference(transcriber, hf_model, features[i : i + 1], prompt + b))
        for i, (name, a, b) in enumerate(zip(names, ours, theirs))
    ]


def first_difference_margins(reference, ours: list[list[int]], theirs: list[list[int]], mel: torch.Tensor, prompt: list[int]) -> list[dict]:
    """Where the rows part, how far apart the two choices are in `reference`'s (an fp32 model's) logits: near 0, a
    near-tie that another precision may fairly break the other way."""
    found = []
    for row, (a, b) in enumerate(zip(ours, theirs)):
        at = first_difference(a, b)
        if at is None or at == min(len(a), len(b)):
            continue  # equal, or one stopped where the other went on: no two choices to compare
        tokens = torch.tensor([prompt + a[:at]], device=mel.device)
        with torch.inference_mode():
            logits = reference(mel[row : row + 1].float(), tokens)[0, -1]
        found.append({"row": row, "position": at, "margin": abs(float(logits[a[at]] - logits[b[at]]))})
    return found


def device_parity(path: Path, device: torch.device, dtype: torch.dtype, samples: torch.Tensor, tokens: int, prompt: list[int],
                  rules: tuple) -> dict:  # fmt: skip
    """Greedy tokens, ours against transformers' generate on the same log-mel (ours), in fp32 and in `dtype`, on a
    device: identical, or the agreement and, at each first difference, the fp32 margin between the two choices."""
    from oracle import hf_tokens
    from transformers import WhisperForConditionalGeneration

    from distilwhisper.audio import log_mel_spectrogram
    from distilwhisper.decoding import Decoding
    from distilwhisper.weights import load_whisper

    report, reference = {}, load_whisper(path, dtype=torch.float32, device=device)
    mel = log_mel_spectrogram(samples.to(device), reference.dims.n_mels)
    eot = common.EOT
    for run_dtype in dict.fromkeys([torch.float32, dtype]):
        ours = reference if run_dtype == torch.float32 else load_whisper(path, dtype=run_dtype, device=device)
        theirs = WhisperForConditionalGeneration.from_pretrained(path, attn_implementation="sdpa").to(device=device, dtype=run_dtype).eval()
        features = mel.to(run_dtype)
        with torch.inference_mode():
            ours.decoder.setup_caches(ours.encoder(features))
            got = [r.tokens for r in greedy_decode(ours, [prompt] * len(features), Decoding(eot, tokens, rules))]
            expected = hf_tokens(theirs, features, max_new_tokens=tokens)
        agreeing = sum(len(a) if (i := first_difference(a, b)) is None else i for a, b in zip(got, expected))
        report[str(run_dtype)] = {
            "identical": got == expected,
            "rows_identical": sum(a == b for a, b in zip(got, expected)) / len(got),
            "agreeing_prefix": agreeing / max(1, sum(map(max, map(len, got), map(len, expected)))),
            "first_differences": first_difference_margins(reference, got, expected, mel, prompt),
        }
        del ours, theirs
    return report


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
    parser.add_argument("--num-beams", type=int, default=1, help="beam search with N hypotheses on both sides (default: 1, greedy)")
    parser.add_argument("--device", default="cpu", help="both engines run here, in float32 (default: cpu)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="max |logit difference| (default: %(default)s)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON here")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Both engines on every file, a line each as it is done; the summary, with every file's Parity."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    model_dir = resolve_model_dir(args.model)  # a short name or hub id, found once for both engines
    transcriber = load_model(model_dir, device=args.device, dtype="float32")
    hf_model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).to(args.device).eval()
    extractor = WhisperFeatureExtractor.from_pretrained(model_dir)
    plan = transcriber.plan(TranscribeOptions(args.language, args.task, args.max_new_tokens))
    # Without --language on a multilingual checkpoint our side reads <|en|>, as the help says, not a detection.
    prompt = plan.prompt(transcriber.tokenizer.language_token("en") if plan.detect_from else None)
    options = {k: v for k, v in (("language", args.language), ("task", args.task)) if v is not None}

    reports = []
    print(f"{'tokens':>6}  {'parity':<22}  {'max |Δlogit|':>12}  file", flush=True)
    for path in args.audio:
        samples = pad_or_trim(load_audio(path), N_SAMPLES)
        features = extractor(samples, sampling_rate=16000, return_tensors="pt").input_features.to(args.device)
        (report,) = compare(transcriber, hf_model, features, [path], prompt, plan.decoding.max_new_tokens, args.num_beams,
                            **options)  # fmt: skip
        verdict = "identical" if report.identical else f"differ at token {report.first_difference}"
        print(f"{len(report.theirs):>6}  {verdict:<22}  {report.max_logit_difference:12.2e}  {path}", flush=True)
        reports.append(report)
    identical = sum(r.identical for r in reports)
    worst = max(r.max_logit_difference for r in reports)
    return {"model": str(args.model), "num_beams": args.num_beams, "identical": identical, "files": len(reports), "max_logit_difference": worst,
            "tolerance": args.tolerance, "ok": identical == len(reports) and worst <= args.tolerance,
            "reports": [asdict(r) for r in reports]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:  # only here, so that --help works without it
        import transformers
    except ModuleNotFoundError:
        print('bench/parity.py needs transformers: pip install "distilwhisper[bench]"', file=sys.stderr)
        return 2
    transformers.logging.set_verbosity_error()  # its notes on generation settings would bury the report
    summary = run(args)
    worst, within = summary["max_logit_difference"], summary["max_logit_difference"] <= args.tolerance
    print(f"{summary['identical']} of {summary['files']} files token-identical to transformers; max |logit difference| "
          f"{worst:.2e} ({'within' if within else 'over'} {args.tolerance:g})")  # fmt: skip
    if args.json:
        write_atomically(Path(args.json), json.dumps(summary, indent=1))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
