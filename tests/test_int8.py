"""The CPU's int8 mode (dtype="int8": weights.Int8Linear in every linear layer) and dtype="auto".

No oracle computes Whisper this way, so int8 is held to bounds (the logits' bounds against transformers in float32
are in test_half_precision.py) and to float32's own transcripts: on whisper-base and real speech, decoding
teacher-forced on float32's tokens, int8 picks the same token at nearly every position. Tolerances: the kernel's
error per row 3e-2 of the row's largest output (7-bit activations; measured up to 2e-2); token agreement on real
speech at least 97% (measured 98-100%).
"""

import os
import subprocess
import sys

import pytest
import torch

from helpers import AUDIO_DIR, BASE_MODEL, PROMPT, ROOT, needs_shared
from distilwhisper import DistilWhisperError, load_model
from distilwhisper.audio import load_audio, log_mel_spectrogram, pad_or_trim
from distilwhisper.devices import cpu_has_half_arithmetic, resolve_precision
from distilwhisper.weights import Int8Linear, int8_linears, is_int8, load_whisper

ROW_TOLERANCE = 3e-2
AGREEMENT = 0.97


def row_errors(got: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    return (got - expected).abs().amax(dim=-1) / expected.abs().amax(dim=-1)


def test_int8_linear_quantises_each_token_with_its_own_scale():
    """A loud token (a hundred times the others) costs the quiet ones nothing: each row's error stays within the
    bound, as it would not with one scale for the whole input."""
    generator = torch.Generator().manual_seed(5)
    linear = torch.nn.Linear(64, 96)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(96, 64, generator=generator) / 8)
    x = torch.randn(3, 10, 64, generator=generator)
    x[1, 4] *= 100
    with torch.no_grad():
        expected, got = linear(x), Int8Linear(linear)(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert row_errors(got, expected).max().item() < ROW_TOLERANCE
    # bfloat16 in, bfloat16 out (the bfloat16 model's int8 self-draft), the same bound
    got = Int8Linear(linear.to(torch.bfloat16))(x.to(torch.bfloat16))
    assert got.dtype == torch.bfloat16
    assert row_errors(got.float(), expected).max().item() < ROW_TOLERANCE + 1e-2


def test_int8_linear_gives_a_row_the_same_output_whoever_shares_its_batch():
    """One token alone (a greedy step) and the same token among others (a speculative check, a batch) give
    bit-identical outputs: the activations' range does not depend on the other rows."""
    generator = torch.Generator().manual_seed(11)
    linear = torch.nn.Linear(64, 96)
    layer = Int8Linear(linear)
    x = torch.randn(6, 64, generator=generator)
    x[:, :32] = x[:, :32].abs()  # rows whose most negative value is smaller than their largest: alone, lopsided
    with torch.no_grad():
        together = layer(x)
        alone = torch.cat([layer(row[None]) for row in x])
    assert torch.equal(together, alone)


def test_int8_linears_unties_the_output_projection(random_checkpoint):
    model = int8_linears(load_whisper(random_checkpoint(0)))
    assert is_int8(model) and not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert isinstance(model.decoder.proj_out, Int8Linear)
    assert model.decoder.embed_tokens.weight.dtype == torch.float32  # the embedding stays float


def test_load_model_in_int8_says_so(random_checkpoint):
    transcriber = load_model(random_checkpoint(0, tokenizer="base"), dtype="int8")
    assert (transcriber.precision, transcriber.dtype) == ("int8", torch.float32)
    assert is_int8(transcriber.model)
    assert load_model(random_checkpoint(0, tokenizer="base")).precision == "float32"


def auto_in_a_child(compile: bool = False, int8_kernels: bool = True, **env: str) -> str:
    """What "auto" picks in a fresh process (oneDNN reads its ISA limit once), optionally as in a torch built
    without int8 kernels."""
    code = "from distilwhisper import devices\n"
    code += "" if int8_kernels else "devices.has_int8_kernels = lambda: False\n"
    code += f"print(devices.resolve_precision('cpu', 'auto', compile={compile}).name)"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                           env=os.environ | {"PYTHONPATH": str(ROOT)} | env)  # fmt: skip
    return child.stdout.strip()


def test_auto_is_int8_on_avx512_bf16_and_avx2_cpus_alike():
    """Here as this CPU is, and with oneDNN held to AVX2 (a CPU without bfloat16 units, as most rented ones)."""
    assert auto_in_a_child() == "int8"
    assert auto_in_a_child(ONEDNN_MAX_CPU_ISA="AVX2") == "int8"


def test_auto_without_int8_is_bfloat16_where_the_cpu_computes_it_else_float32():
    native = "bfloat16" if cpu_has_half_arithmetic(torch.bfloat16) else "float32"
    assert auto_in_a_child(int8_kernels=False) == native
    assert auto_in_a_child(int8_kernels=False, ONEDNN_MAX_CPU_ISA="AVX2") == "float32"
    assert auto_in_a_child(compile=True) == native  # torch.compile cannot trace int8 weights
    assert auto_in_a_child(compile=True, ONEDNN_MAX_CPU_ISA="AVX2") == "float32"


def test_int8_with_compile_is_refused():
    with pytest.raises(DistilWhisperError, match="torch.compile cannot trace int8 weights"):
        resolve_precision("cpu", "int8", compile=True)


@pytest.mark.parametrize("mode", ["bfloat16", "int8"])
def test_the_int8_self_draft_and_long_form_in_every_mode(random_checkpoint, mode):
    """Speculative decoding with the int8 self-draft gives the mode's own greedy tokens, short and long inputs
    (a 35 s input: two chunks), in bfloat16 (the draft converts on its way in and out) and in int8."""
    if mode == "bfloat16" and not cpu_has_half_arithmetic(torch.bfloat16):
        pytest.skip("this CPU does not compute bfloat16 natively: load_model refuses it")
    main = random_checkpoint(0, tokenizer="base")
    generator = torch.Generator().manual_seed(37)
    audio = [0.1 * torch.randn(16000 * seconds, generator=generator).numpy() for seconds in (4, 35)]
    options = dict(max_new_tokens=12, no_speech_threshold=None, batch_size=2)
    plain = load_model(main, dtype=mode).transcribe(audio, **options)
    fast = load_model(main, dtype=mode, assistant="int8").transcribe(audio, **options)
    assert [r.tokens for r in fast] == [r.tokens for r in plain]
    assert all(len(r.tokens) > 0 for r in plain)
    assert min(r.acceptance_rate for r in fast) > 0.5


def test_cli_verbose_names_the_precision(random_checkpoint, capsys):
    from distilwhisper.cli import main

    audio = AUDIO_DIR / "short" / "jfk_inaugural_11s.wav"
    if not audio.exists():
        pytest.skip(f"real fixtures not found at {AUDIO_DIR}")
    model = random_checkpoint(0, tokenizer="base")
    assert main([str(audio), "--model", str(model), "--dtype", "int8", "--verbose", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[0] == f"distilwhisper: {model} on cpu in int8"
    assert main([str(audio), "--model", str(model), "--dtype", "int8", "--compile"]) == 2
    assert "torch.compile cannot trace int8 weights" in capsys.readouterr().err


@needs_shared
def test_int8_keeps_float32s_tokens_on_real_speech(base_model):
    """whisper-base, three real files: teacher-forced on float32's greedy tokens, int8 picks the same token at
    nearly every position (and the text of the clearest file is float32's)."""
    int8 = load_model(BASE_MODEL, dtype="int8")
    names = ["jfk_inaugural_11s.wav", "ljspeech_LJ001-0001.wav", "mfa_crossword.wav"]
    audio = [load_audio(AUDIO_DIR / "short" / name) for name in names]
    reference = base_model.transcribe(audio, language="en", batch_size=3)
    same = total = 0
    with torch.no_grad():
        for samples, result in zip(audio, reference):
            mel = log_mel_spectrogram(pad_or_trim(torch.as_tensor(samples)))[None]
            sequence = torch.tensor([PROMPT + result.tokens])
            predicted = int8.model(mel, sequence)[0, len(PROMPT) - 1 : -1].argmax(dim=-1)
            same += (predicted == torch.tensor(result.tokens)).sum().item()
            total += len(result.tokens)
    assert total > 60 and same / total >= AGREEMENT
    assert int8.transcribe(audio[0], language="en").text == reference[0].text
