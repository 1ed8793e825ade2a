"""float16 and bfloat16 through the whole model: weights, features, caches, decoding.

Half precision is for the GPU; these run the same code on the CPU (calling the model directly, since
load_model refuses half precision on a CPU without native support). Oracle: transformers in float32 on the
same random checkpoint. Tolerances, relative L2 error of the logits: float16 (10-bit mantissa) 5e-3,
bfloat16 (7-bit mantissa) 3e-2; measured about 1.6e-3 and 1.3e-2.
"""

import pytest
import torch

from helpers import PROMPT, decode, tokens_of
from distilwhisper.weights import load_whisper

RELATIVE_TOLERANCE = {torch.float16: 5e-3, torch.bfloat16: 3e-2}


@pytest.fixture(scope="module")
def checkpoint(random_checkpoint):
    from transformers import WhisperForConditionalGeneration

    path = random_checkpoint(41, "distil-2dec")
    return path, WhisperForConditionalGeneration.from_pretrained(path).eval()


def random_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, 80, 3000, generator=generator), torch.randint(0, 50257, (2, 10), generator=generator)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_near_transformers_float32(checkpoint, dtype):
    path, oracle = checkpoint
    mel, tokens = random_inputs(42)
    with torch.no_grad():
        expected = oracle(input_features=mel, decoder_input_ids=tokens).logits
        got = load_whisper(path, dtype=dtype)(mel.to(dtype), tokens)
    assert got.dtype == dtype
    assert ((got.float() - expected).norm() / expected.norm()).item() < RELATIVE_TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_greedy_picks_only_near_ties_differently(checkpoint, dtype):
    """Greedy decoding in half precision keeps its caches in that dtype; where it picks another token than
    float32 would, the two were within twice the half-precision logit error of each other (a near-tie)."""
    path, oracle = checkpoint
    mel, _ = random_inputs(43)
    model = load_whisper(path, dtype=dtype)
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
