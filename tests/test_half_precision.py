"""float16 and bfloat16 through the whole model: weights, features, caches, decoding.

Half precision is for the GPU; these run the same code on the CPU (calling the model directly, since
load_model refuses half precision on a CPU without native support). Oracle: transformers in float32 on the
same random checkpoint. Tolerances, relative L2 error of the logits: float16 (10-bit mantissa) 5e-3,
bfloat16 (7-bit mantissa) 3e-2; measured about 1.6e-3 and 1.3e-2.
"""

import pytest
import torch

from conftest import TINY_CONFIGS, save_random_whisper
from distilwhisper.decoding import greedy_decode
from distilwhisper.weights import load_whisper

PROMPT = [50258, 50259, 50359, 50363]
RELATIVE_TOLERANCE = {torch.float16: 5e-3, torch.bfloat16: 3e-2}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from transformers import WhisperForConditionalGeneration

    path = save_random_whisper(tmp_path_factory.mktemp("half"), seed=41, **TINY_CONFIGS["distil-2dec"])
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
    tokens = greedy_decode(model, model.encoder(mel.to(dtype)), PROMPT, eot=50257, rules=[], max_new_tokens=12).tokens
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
