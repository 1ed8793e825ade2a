"""What a checkpoint's generation_config.json decides when the caller says nothing: the token limit, the
language and the task. Oracle: transformers' WhisperForConditionalGeneration.generate() with default arguments."""

import json
import os

import numpy as np
import pytest
import torch

from helpers import AUDIO_DIR, BASE_MODEL, EOT, needs_shared
from distilwhisper import TranscribeOptions, load_model

pytestmark = needs_shared


def noise(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(5 * 16000) * 0.1).astype(np.float32)


@pytest.mark.parametrize("max_length", [448, 60])
def test_default_token_limit_is_generates(max_length, random_checkpoint, copied):
    """With the end token suppressed both run to the limit: the checkpoint's max_length new tokens (448 in
    Whisper's), at most what the decoder's 448 positions hold after the prompt. (A checkpoint without
    max_length gets the decoder's context from us, transformers' generic default of 20 from generate().)"""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    path = copied(random_checkpoint(31, tokenizer="base"))
    generation = json.loads((path / "generation_config.json").read_text())
    generation["suppress_tokens"] += [EOT]
    generation["max_length"] = max_length
    (path / "generation_config.json").write_text(json.dumps(generation))

    audio = noise(32)
    features = WhisperFeatureExtractor()(audio, sampling_rate=16000, return_tensors="pt").input_features
    oracle = WhisperForConditionalGeneration.from_pretrained(path).eval()
    expected = oracle.generate(features, language="en", task="transcribe")[0].tolist()
    expected = expected[4:] if expected[0] == 50258 else expected  # some versions return the 4-token prompt too
    result = load_model(path, device="cpu").transcribe(audio, language="en", no_speech_threshold=None)
    assert len(expected) == min(max_length, 448 - 4) and EOT not in expected
    assert result.tokens == [t for t in expected if t < EOT] and result.truncated


@pytest.fixture(scope="module")
def tuned_checkpoint(tmp_path_factory):
    """whisper-base with generation_config.json edited as a fine-tune would ship it (the weights are linked)."""
    generation = json.loads((BASE_MODEL / "generation_config.json").read_text())

    def make(**fields):
        folder = tmp_path_factory.mktemp("tuned")
        for file in BASE_MODEL.iterdir():
            if file.name != "generation_config.json":
                os.symlink(file, folder / file.name)
        (folder / "generation_config.json").write_text(json.dumps(generation | fields))
        return folder

    return make


FR, DE, TRANSLATE, TRANSCRIBE, NO_TIMESTAMPS = 50265, 50261, 50358, 50359, 50363
CASES = {  # generation_config fields, the caller's arguments
    "forced-ids": ({"forced_decoder_ids": [[1, FR], [2, TRANSLATE], [3, NO_TIMESTAMPS]]}, {}),
    "language-and-task-names": ({"language": "german", "task": "translate"}, {}),
    "language-beats-forced-ids": ({"language": "de", "forced_decoder_ids": [[1, FR], [2, TRANSLATE]]}, {}),
    "caller-beats-checkpoint": ({"forced_decoder_ids": [[1, FR], [2, TRANSLATE]]}, {"language": "en"}),
    "caller-task-keeps-checkpoint-language": ({"language": "fr"}, {"task": "translate"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_checkpoint_language_and_task_are_the_defaults(case, tuned_checkpoint):
    from transformers import WhisperForConditionalGeneration

    fields, arguments = CASES[case]
    path = tuned_checkpoint(**fields)
    oracle = WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    prompts = []
    oracle.model.decoder.register_forward_pre_hook(
        lambda module, args, kwargs: prompts.append(kwargs["input_ids"][0].tolist()), with_kwargs=True
    )
    features = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(33))
    oracle.generate(features, max_new_tokens=1, **arguments)

    ours = load_model(path, device="cpu")
    assert ours.plan(TranscribeOptions(**arguments)).prompt() == prompts[0]
    language = ours.tokenizer.language_of(prompts[0][1])
    assert ours.transcribe(AUDIO_DIR / "short" / "jfk_inaugural_11s.wav", max_new_tokens=3, **arguments).language == language


def test_a_language_without_a_task_is_transcribed(tuned_checkpoint):
    """Where nothing names a task, generate() leaves the task token out (<|startoftranscript|><|fr|><|notimestamps|>),
    a prompt Whisper was not trained on; we transcribe, as openai/whisper and faster-whisper do."""
    ours = load_model(tuned_checkpoint(forced_decoder_ids=[[1, FR]]), device="cpu")
    assert ours.plan().prompt() == [50258, FR, TRANSCRIBE, NO_TIMESTAMPS]
