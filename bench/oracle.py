"""The oracle's side, without pytest: random transformers checkpoints and transformers' generated tokens.

conftest re-exports both for the tests; bench/gpu.py imports them on a machine that has no pytest.
"""

from pathlib import Path


def save_random_whisper(
    path: Path, seed: int, shard: bool = False, english_only: bool = False, device: str = "cpu", dtype=None, **overrides
) -> Path:
    """A randomly initialised transformers Whisper saved as safetensors (sharded if asked): the oracle's twin.

    `overrides` are WhisperConfig fields; `device` is where the weights are drawn (a GPU draws full-size ones
    in seconds), `dtype` the one they are saved in (default float32).
    english_only: shaped and configured as transformers' converter makes the .en checkpoints: a 51864-token
    vocabulary (GPT-2's, one ordinary token fewer, so every special id is one lower: <|endoftext|> = 50256)
    and openai/whisper-medium.en's generation config (no languages or tasks, <|notimestamps|> forced).
    """
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from distilwhisper.languages import LANGUAGES

    torch.manual_seed(seed)
    eot = 50256 if english_only else 50257
    # init_std well above the default so logits are spread out and greedy argmax has no near-ties.
    config = WhisperConfig(**dict(vocab_size=51864 if english_only else 51865, max_source_positions=1500,
                                  max_target_positions=448, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
                                  decoder_start_token_id=eot + 1, init_std=0.2) | overrides)
    with torch.device(device):
        model = WhisperForConditionalGeneration(config).eval()
    if dtype is not None:
        model.to(dtype)
    # Whisper's real special-token ids, so transformers' generate() builds the usual prompt.
    generation = model.generation_config
    translate, transcribe, no_timestamps = eot + 101, eot + 102, eot + 106
    generation.decoder_start_token_id, generation.no_timestamps_token_id = eot + 1, no_timestamps
    generation.is_multilingual = not english_only
    if english_only:
        generation.forced_decoder_ids, generation.max_length = [[1, no_timestamps]], 448
    else:  # every language, as in whisper-base's generation config, so generate() detects among all of them
        generation.lang_to_id = {f"<|{code}|>": eot + 2 + i for i, code in enumerate(LANGUAGES)}
        generation.task_to_id = {"translate": translate, "transcribe": transcribe}
    generation._from_model_config = False  # else transformers rebuilds it from config.json on load
    generation.suppress_tokens = sorted(torch.randint(0, eot, (40,)).tolist()) + [translate, transcribe]
    if english_only:  # a trained model never follows <|notimestamps|> with timestamps; random weights would, and
        generation.suppress_tokens += list(range(no_timestamps + 1, 51864))  # generate() then cuts segments out
    generation.begin_suppress_tokens = [220, eot]
    model.save_pretrained(path, max_shard_size="2MB" if shard else "10GB")
    return path


def hf_tokens(hf_model, input_features, max_new_tokens: int, eos: int = 50257, num_beams: int = 1,
              **generate_kwargs) -> list[list[int]]:  # fmt: skip
    """The oracle: transformers' Whisper generate, greedy (or by beam search: num_beams), English transcription,
    text tokens only.

    Some transformers versions return the prompt (`prompt_ids` among it) too, some only new tokens: strip what is there.
    """
    out = hf_model.generate(input_features, language="en", task="transcribe", max_new_tokens=max_new_tokens,
                            do_sample=False, num_beams=num_beams, **generate_kwargs)
    previous = generate_kwargs["prompt_ids"].tolist() if generate_kwargs.get("prompt_ids") is not None else []
    rows = []
    for row in out.tolist():
        if previous and row[: len(previous)] == previous:
            row = row[len(previous) :]
        while row and row[0] in (50258, 50259, 50359, 50363):  # sot, <|en|>, <|transcribe|>, <|notimestamps|>
            row = row[1:]
        rows.append(row[: row.index(eos)] if eos in row else row)
    return rows
