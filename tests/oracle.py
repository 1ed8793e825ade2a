"""The oracle's side, without pytest: random transformers checkpoints and transformers' greedy tokens.

conftest re-exports both for the tests; bench/gpu.py imports them on a machine that has no pytest.
"""

from pathlib import Path


def save_random_whisper(path: Path, seed: int, shard: bool = False, device: str = "cpu", dtype=None, **overrides) -> Path:
    """A randomly initialised transformers Whisper saved as safetensors (sharded if asked): the oracle's twin.

    `overrides` are WhisperConfig fields; `device` is where the weights are drawn (a GPU draws full-size ones
    in seconds), `dtype` the one they are saved in (default float32).
    """
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    # init_std well above the default so logits are spread out and greedy argmax has no near-ties.
    config = WhisperConfig(**dict(vocab_size=51865, max_source_positions=1500, max_target_positions=448,
                                  bos_token_id=50257, eos_token_id=50257, pad_token_id=50257,
                                  decoder_start_token_id=50258, init_std=0.2) | overrides)
    with torch.device(device):
        model = WhisperForConditionalGeneration(config).eval()
    if dtype is not None:
        model.to(dtype)
    # Whisper's real special-token ids, so transformers' generate(language="en") builds the usual prompt.
    generation = model.generation_config
    generation.decoder_start_token_id, generation.no_timestamps_token_id = 50258, 50363
    generation.lang_to_id, generation.task_to_id = {"<|en|>": 50259}, {"translate": 50358, "transcribe": 50359}
    generation.is_multilingual = True
    generation._from_model_config = False  # else transformers rebuilds it from config.json on load
    generation.suppress_tokens = sorted(torch.randint(0, 50257, (40,)).tolist()) + [50358, 50359]
    generation.begin_suppress_tokens = [220, 50257]
    model.save_pretrained(path, max_shard_size="2MB" if shard else "10GB")
    return path


def hf_greedy_tokens(hf_model, input_features, max_new_tokens: int, eos: int = 50257, **generate_kwargs) -> list[list[int]]:
    """The oracle: transformers' Whisper generate, greedy, English transcription, text tokens only.

    Some transformers versions return the prompt too, some only new tokens: strip what is there.
    """
    out = hf_model.generate(input_features, language="en", task="transcribe", max_new_tokens=max_new_tokens,
                            do_sample=False, num_beams=1, **generate_kwargs)
    rows = []
    for row in out.tolist():
        while row and row[0] in (50258, 50259, 50359, 50363):  # sot, <|en|>, <|transcribe|>, <|notimestamps|>
            row = row[1:]
        rows.append(row[: row.index(eos)] if eos in row else row)
    return rows
