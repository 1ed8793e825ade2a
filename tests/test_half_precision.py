"""float16, bfloat16 and int8 through the whole model: weights, features, caches, decoding.

Half precision is for the GPU (and CPUs that compute bfloat16 natively); these run the same code on any CPU
(calling the model directly, since load_model refuses half precision on a CPU without native support). int8 is
the CPU's: int8 weights and activations in every linear layer (weights.Int8Linear), float32 elsewhere. Oracle:
transformers in float32 on the same random checkpoint. Tolerances, relative L2 error of the logits: float16
(10-bit mantissa) 5e-3, bfloat16 (7-bit mantissa) 3e-2, int8 (7-bit activations, 8-bit weights, in every matmul
of the network) 8e-2; measured about 1.6e-3, 1.3e-2 and 4.8e-2.
"""

import pytest
import torch

from helpers import PROMPT, decode, tokens_of
from distilwhisper.weights import int8_linears, load_whisper

RELATIVE_TOLERANCE = {"float16": 5e-3, "bfloat16": 3e-2, "int8": 8e-2}
MODES = list(RELATIVE_TOLERANCE)


def load_in(path, mode: str):
    """(the model in `mode`, the dtype its input and caches take)."""
    if mode == "int8":
        return int8_linears(load_whisper(path)), torch.float32
    return load_whisper(path, dtype=getattr(torch, mode)), getattr(torch, mode)


@pytest.fixture(scope="module")
def checkpoint(random_checkpoint):
    from transformers import WhisperForConditionalGeneration

    path = random_checkpoint(41, "distil-2dec")
    return path, WhisperForConditionalGeneration.from_pretrained(path).eval()


def random_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, 80, 3000, generator=generator), torch.randint(0, 50257, (2, 10), generator=generator)


@pytest.mark.parametrize("mode", MODES)
def test_half_precision_logits_are_near_transformers_float32(checkpoint, mode):
    path, oracle = checkpoint
    mel, tokens = random_inputs(42)
    model, dtype = load_in(path, mode)
    with torch.no_grad():
        expected = oracle(input_features=mel, decoder_input_ids=tokens).logits
        got = model(mel.to(dtype), tokens)
    assert got.dtype == dtype
    assert ((got.float() - expected).norm() / expected.norm()).item() < RELATIVE_TOLERANCE[mode]


@pytest.mark.parametrize("mode", MODES)
def test_half_precision_greedy_picks_only_near_ties_differently(checkpoint, mode):
    """Greedy decoding in lower precision keeps its caches in that dtype; where it picks another token than
    float32 would, the two were within twice the lower precision's logit error of each other (a near-tie)."""
    path, oracle = checkpoint
    mel, _ = random_inputs(43)
    model, dtype = load_in(path, mode)
    tokens = tokens_of(decode(model, model.encoder(mel.to(dtype)), PROMPT, 12))
    assert model.decoder.layers[0].self_cache.k.dtype == dtype
    with torch.no_grad():
        for row, generated in enumerate(tokens):
            sequence = torch.tensor([PROMPT + generated])
            expected = oracle(input_features=mel[row : row + 1], decoder_input_ids=sequence).logits[0]
            got = model(mel[row : row + 1].to(dtype), sequence)[0].float()
            error = (got - expected).abs().max().item()
            chosen = expected[len(PROMPT) - 1 : -1].gather(1, torch.tensor(generated)[:, None])[:, 0]
            best = expected[len(PROMPT) - 1 : -1].amax(dim=-1)
            assert (best - chosen).max().item() <= 2 * error
