"""Finding and loading checkpoints: sharded and single files, the hub cache offline, strict key checks."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub.utils import filter_repo_objects
from safetensors.torch import load_file, save_file

from helpers import BASE_MODEL, TINY_CONFIGS, add_base_tokenizer, needs_shared
from distilwhisper import DistilWhisperError, load_model
from distilwhisper.model import Whisper
from distilwhisper.tokenizer import load_tokenizer
from distilwhisper.weights import (
    CHECKPOINT_FILES, MODEL_NAMES, load_dims, load_generation_defaults, load_whisper, resolve_model_dir
)

TINY = TINY_CONFIGS["distil-2dec"]


@pytest.fixture(scope="module")
def single(random_checkpoint):
    return random_checkpoint(5, "distil-2dec")


@pytest.fixture(scope="module")
def sharded(random_checkpoint):
    return random_checkpoint(5, "distil-2dec", shard=True)


def edited_copy(source, tmp_path, edit):
    """A copy of the checkpoint whose tensors went through `edit(dict)`."""
    target = tmp_path / "edited"
    shutil.copytree(source, target)
    tensors = load_file(target / "model.safetensors")
    edit(tensors)
    save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})
    return target


def test_dims_come_from_config(single):
    dims = load_dims(single)
    assert (dims.d_model, dims.encoder_layers, dims.decoder_layers, dims.decoder_heads, dims.n_mels) == (96, 3, 2, 6, 80)


def test_sharded_checkpoint_loads_the_same_tensors(single, sharded):
    assert (sharded / "model.safetensors.index.json").is_file() and not (sharded / "model.safetensors").exists()
    a, b = load_whisper(single).state_dict(), load_whisper(sharded).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stored_dtype_is_cast_on_load(single, tmp_path):
    half = edited_copy(single, tmp_path, lambda t: t.update({k: v.half() for k, v in t.items()}))
    model = load_whisper(half, dtype=torch.float32)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.dtype for p in load_whisper(single, dtype=torch.bfloat16).parameters()} == {torch.bfloat16}


def test_missing_tensor_is_named(single, tmp_path):
    broken = edited_copy(single, tmp_path, lambda t: t.pop("model.decoder.layers.1.fc2.bias"))
    with pytest.raises(DistilWhisperError, match=r"missing tensor model\.decoder\.layers\.1\.fc2\.bias"):
        load_whisper(broken)


def test_misshaped_tensor_is_named(single, tmp_path):
    def shrink(t):
        t["model.encoder.conv1.weight"] = t["model.encoder.conv1.weight"][:, :40].contiguous()

    with pytest.raises(DistilWhisperError, match=r"model\.encoder\.conv1\.weight has shape \(96, 40, 3\)"):
        load_whisper(edited_copy(single, tmp_path, shrink))


def test_unexpected_tensor_is_named(single, tmp_path):
    extra = edited_copy(single, tmp_path, lambda t: t.update({"model.decoder.layers.2.fc1.bias": torch.ones(3)}))
    with pytest.raises(DistilWhisperError, match=r"unexpected tensor decoder\.layers\.2\.fc1\.bias"):
        load_whisper(extra)


def test_nan_tensor_is_named(single, tmp_path):
    def poison(t):
        t["model.encoder.layer_norm.weight"][3] = float("nan")

    with pytest.raises(DistilWhisperError, match=r"model\.encoder\.layer_norm\.weight holds NaN"):
        load_whisper(edited_copy(single, tmp_path, poison))


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(DistilWhisperError, match="no config.json"):
        load_whisper(tmp_path)


def test_folder_without_weights_is_rejected(single, tmp_path):
    shutil.copy(single / "config.json", tmp_path)
    with pytest.raises(DistilWhisperError, match="no model.safetensors"):
        load_whisper(tmp_path)


def test_non_whisper_config_is_rejected(single, tmp_path):
    config = json.loads((single / "config.json").read_text()) | {"model_type": "bert"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(DistilWhisperError, match="'bert' model, not 'whisper'"):
        load_whisper(tmp_path)


def test_corrupt_safetensors_is_rejected(single, tmp_path):
    shutil.copy(single / "config.json", tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(DistilWhisperError, match="cannot read .*model.safetensors"):
        load_whisper(tmp_path)


def fake_hub_cache(cache_dir, repo_id: str, source, names) -> None:
    """The huggingface-hub cache layout, models--owner--name/{refs/main, snapshots/<commit>/...}, holding
    the files `names` (paths relative to `source`)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for name in names:
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


TOKENIZER_FILES = ["tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json",
                   "tokenizer_config.json", "normalizer.json"]
OLD_TOKENIZER_FILES = [name for name in TOKENIZER_FILES if name != "tokenizer.json"]  # as older repos ship them
# Files whisper repos on the hub carry that neither a transcription nor `distilwhisper.evaluate` (normalizer.json)
# reads: other weight formats and precisions, docs, tokenizer files the tiktoken tokenizer has no use for. None of
# them may be downloaded.
NOT_NEEDED = ["pytorch_model.bin", "flax_model.msgpack", "tf_model.h5", "model.fp32-00001-of-00002.safetensors",
              "model.safetensors.index.fp32.json", "onnx/encoder_model.onnx", "ggml-base.bin", "README.md",
              ".gitattributes", "merges.txt", "special_tokens_map.json", "tokenizer_config.json",
              "preprocessor_config.json"]


def full_repo(checkpoint, tokenizer_files, folder):
    """A hub repo's worth of files: the checkpoint, whisper-base's tokenizer files, and NOT_NEEDED's others."""
    shutil.copytree(checkpoint, folder)
    for name in tokenizer_files:
        shutil.copy(BASE_MODEL / name, folder / name)
    for name in NOT_NEEDED:
        if not (folder / name).exists():
            (folder / name).parent.mkdir(exist_ok=True)
            (folder / name).write_bytes(b"not needed")
    return folder


@needs_shared
@pytest.mark.parametrize(
    "weights, tokenizer_files",
    [("single", TOKENIZER_FILES), ("sharded", TOKENIZER_FILES), ("single", OLD_TOKENIZER_FILES)],
    ids=["single", "sharded", "no-tokenizer-json"],
)
def test_hub_id_loads_offline_from_only_checkpoint_files(request, weights, tokenizer_files, tmp_path, monkeypatch):
    """Oracle: huggingface_hub's filter_repo_objects, the filter snapshot_download applies to CHECKPOINT_FILES.

    Only the files it selects from a full repo reach the cache, so a pattern that misses a file the loader
    reads fails the load, and one that catches a file nobody reads fails the first assert.
    """
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    checkpoint = request.getfixturevalue(weights)
    repo = full_repo(checkpoint, tokenizer_files, tmp_path / "repo")
    files = [str(path.relative_to(repo)) for path in repo.rglob("*") if path.is_file()]
    selected = set(filter_repo_objects(files, allow_patterns=CHECKPOINT_FILES))
    assert not selected & set(NOT_NEEDED), "downloaded but never read"
    fake_hub_cache(tmp_path / "cache", "distil-whisper/tiny-random", repo, selected)

    loaded = load_model("distil-whisper/tiny-random", device="cpu", dtype="float32", cache_dir=tmp_path / "cache")
    a, b = loaded.model.state_dict(), load_whisper(checkpoint).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.defaults == load_generation_defaults(checkpoint)
    reference = load_tokenizer(BASE_MODEL)
    assert loaded.tokenizer.encoding.n_vocab == reference.encoding.n_vocab
    assert loaded.tokenizer.encode(" Hello, world") == reference.encode(" Hello, world")


@pytest.mark.parametrize("hub", [{"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}],
                         ids=["offline", "unreachable"])  # fmt: skip
def test_a_hub_id_neither_cached_nor_reachable_says_what_to_do(hub, tmp_path):
    """An empty cache, and a hub that is off (HF_HUB_OFFLINE) or refuses connections (port 9): the hub's own words
    ("Got: ConnectError: [Errno 111] Connection refused") say neither what is missing nor what to do. The hub
    reads both variables once, on import: a fresh process."""
    code = (
        "import sys; from distilwhisper.weights import resolve_model_dir\n"
        "try: resolve_model_dir('distil-whisper/absent', cache_dir=sys.argv[1])\n"
        "except Exception as e: print(f'{type(e).__name__}: {e}')"
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()} | hub  # 127.0.0.1 itself, never a proxy
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert run.stdout == (
        "DistilWhisperError: model 'distil-whisper/absent' is not in the local hub cache, and the hub cannot be "
        "reached (no network, or HF_HUB_OFFLINE=1): pass a checkpoint folder, or download it once with network\n"
    ), run.stderr


def test_name_that_is_neither_folder_nor_repo_id(tmp_path):
    with pytest.raises(DistilWhisperError, match="neither a checkpoint folder nor a hub repo id"):
        load_model(tmp_path / "does" / "not" / "exist")


@pytest.mark.parametrize("name, repo_id", [
    ("base", "openai/whisper-base"), ("tiny.en", "openai/whisper-tiny.en"), ("large-v3", "openai/whisper-large-v3"),
    ("turbo", "openai/whisper-large-v3-turbo"), ("large-v3-turbo", "openai/whisper-large-v3-turbo"),
    ("distil-large-v2", "distil-whisper/distil-large-v2"), ("distil-small.en", "distil-whisper/distil-small.en"),
])
def test_short_names_are_their_hub_repos(name, repo_id, single, tmp_path, monkeypatch):
    """The cache holds only `repo_id`, offline: the short name finds it, or nothing."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub_cache(tmp_path, repo_id, single, ["config.json"])
    assert resolve_model_dir(name, cache_dir=tmp_path) == resolve_model_dir(repo_id, cache_dir=tmp_path)


@needs_shared
def test_load_model_takes_a_short_name(single, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = add_base_tokenizer(shutil.copytree(single, tmp_path / "repo"))
    fake_hub_cache(tmp_path / "cache", "openai/whisper-base", repo, [p.name for p in repo.iterdir()])
    loaded = load_model("base", device="cpu", dtype="float32", cache_dir=tmp_path / "cache").model.state_dict()
    expected = load_whisper(single).state_dict()
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in loaded)


def test_a_folder_named_like_a_short_name_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    assert resolve_model_dir("base") == Path("base")


def test_an_unknown_short_name_lists_the_known_ones():
    with pytest.raises(DistilWhisperError, match="unknown model 'large-v4'") as error:
        load_model("large-v4")
    assert len(str(error.value).splitlines()) == 1 and all(name in str(error.value) for name in MODEL_NAMES)


FULL_SIZE = {  # config.json fields of the published checkpoints, weights not needed
    "distil-large-v2": dict(d_model=1280, encoder_layers=32, decoder_layers=2, encoder_attention_heads=20,
                            decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=80),
    "large-v3": dict(d_model=1280, encoder_layers=32, decoder_layers=32, encoder_attention_heads=20,
                     decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=128,
                     vocab_size=51866),
    "tiny": dict(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
                 decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536, num_mel_bins=80),
}


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_configs_expect_exactly_the_tensors_transformers_has(name, tmp_path):
    """Oracle: transformers' WhisperForConditionalGeneration built (on the meta device) from the same config."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(**FULL_SIZE[name])
    config.save_pretrained(tmp_path)
    with torch.device("meta"):
        oracle = WhisperForConditionalGeneration(config).state_dict()
        ours = Whisper(load_dims(tmp_path)).state_dict()
    expected = {k.removeprefix("model."): tuple(v.shape) for k, v in oracle.items() if k != "proj_out.weight"}
    assert {k: tuple(v.shape) for k, v in ours.items()} == expected


def broken_files(source, folder, files: dict) -> Path:
    """`source`'s config.json and generation_config.json in `folder`, then `files` ({name: JSON value, or a
    dict of fields to change in the copy}) written over them; no weights, as the errors come before them."""
    for name in ("config.json", "generation_config.json"):
        shutil.copy(source / name, folder / name)
    for name, content in files.items():
        if isinstance(content, dict) and (folder / name).is_file():
            content = json.loads((folder / name).read_text()) | content
        (folder / name).write_text(json.dumps(content))
    return folder


BAD_CONFIGS = {  # config.json's content (or fields), and what the message must name
    "array": ([1, 2], "must hold a JSON object"),
    "null": (None, "must hold a JSON object"),
    "size-as-string": ({"d_model": "96"}, "d_model must be an integer"),
    "negative-size": ({"d_model": -96}, "d_model must be positive"),
    "float-size": ({"encoder_layers": 6.0}, "encoder_layers must be an integer"),
    "bool-size": ({"decoder_layers": True}, "decoder_layers must be an integer"),
    "heads-do-not-divide": ({"encoder_attention_heads": 7}, "not divisible by encoder_attention_heads"),
    "odd-d_model": ({"d_model": 7, "encoder_attention_heads": 7, "decoder_attention_heads": 7}, "d_model must be even"),
    "tie-as-string": ({"tie_word_embeddings": "no"}, "tie_word_embeddings must be true or false"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_config_that_cannot_build_a_network_is_named(case, single, tmp_path):
    """Refused at load time as one line naming config.json and the field, not met later inside torch."""
    content, message = BAD_CONFIGS[case]
    folder = broken_files(single, tmp_path, {"config.json": content})
    with pytest.raises(DistilWhisperError, match=re.escape(f"{folder / 'config.json'}")) as error:
        load_whisper(folder)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("index", [{"weight_map": "x"}, [1], {"weight_map": {"model.encoder.conv1.weight": 1}}],
                         ids=["map-as-string", "array", "shard-as-number"])
def test_shard_index_without_a_weight_map_is_named(index, single, tmp_path):
    folder = broken_files(single, tmp_path, {"model.safetensors.index.json": index})
    with pytest.raises(DistilWhisperError, match=re.escape(str(folder / "model.safetensors.index.json"))):
        load_whisper(folder)


@pytest.mark.parametrize("files, culprit", [
    ({"vocab.json": "[1]"}, "vocab.json must hold a JSON object"),
    ({"vocab.json": "{not json"}, "cannot read {folder}/vocab.json"),
    ({"vocab.json": "{}", "tokenizer.json": "{not json"}, "cannot read {folder}/tokenizer.json"),
    ({"vocab.json": "{}", "added_tokens.json": "null"}, "added_tokens.json must hold a JSON object"),
], ids=["vocab-array", "vocab-not-json", "tokenizer-not-json", "added-tokens-null"])  # fmt: skip
def test_tokenizer_file_that_is_not_a_json_object_is_named(files, culprit, tmp_path):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DistilWhisperError) as error:
        load_tokenizer(tmp_path)
    assert culprit.format(folder=tmp_path) in str(error.value) and "\n" not in str(error.value)


BAD_GENERATION = {  # generation_config.json fields, and what the message must say (the random vocabulary: 51865)
    "suppressed-id-past-vocab": ({"suppress_tokens": [1, 1000000000]}, "suppress_tokens holds 1000000000"),
    "begin-suppressed-id-past-vocab": ({"begin_suppress_tokens": [999999]}, "begin_suppress_tokens holds 999999"),
    "suppressed-id-as-string": ({"suppress_tokens": ["220"]}, 'suppress_tokens holds "220"'),
    "suppress-not-a-list": ({"suppress_tokens": 5}, "suppress_tokens must be a list of token ids"),
    "language-id-past-vocab": ({"lang_to_id": {"<|xx|>": 999999}}, "lang_to_id holds 999999"),
    "negative-max-length": ({"max_length": -5}, "max_length must be a positive integer"),
    "max-length-as-string": ({"max_length": "448"}, "max_length must be a positive integer"),
    "forced-id-not-a-pair": ({"forced_decoder_ids": [[1]]}, "forced_decoder_ids must be a list of [position, token id]"),
    "forced-ids-as-string": ({"forced_decoder_ids": "x"}, "forced_decoder_ids must be a list of [position, token id]"),
    "forced-id-past-vocab": ({"forced_decoder_ids": [[1, 51865]]}, "forced_decoder_ids holds 51865"),
    "negative-initial-timestamp": ({"max_initial_timestamp_index": -1}, "max_initial_timestamp_index must be"),
}


@pytest.mark.parametrize("case", sorted(BAD_GENERATION))
def test_generation_field_that_would_fail_decoding_is_named(case, single, tmp_path):
    fields, message = BAD_GENERATION[case]
    folder = broken_files(single, tmp_path, {"generation_config.json": fields})
    with pytest.raises(DistilWhisperError, match=re.escape(f"{folder / 'generation_config.json'}: {message}")) as error:
        load_generation_defaults(folder)
    assert "\n" not in str(error.value)


def test_older_checkpoints_bad_generation_field_names_config_json(single, tmp_path):
    """Without it in generation_config.json, the field comes from config.json, and so does the blame."""
    folder = broken_files(single, tmp_path, {"config.json": {"suppress_tokens": [-1]}})
    generation = json.loads((folder / "generation_config.json").read_text())
    del generation["suppress_tokens"]
    (folder / "generation_config.json").write_text(json.dumps(generation))
    with pytest.raises(DistilWhisperError, match=re.escape(f"{folder / 'config.json'}: suppress_tokens holds -1")):
        load_generation_defaults(folder)


def test_forced_ids_may_leave_a_token_to_detection(single, tmp_path):
    """A null token, as transformers writes [[1, null], [2, <|transcribe|>]], is no error (a guard on the checks above)."""
    folder = broken_files(single, tmp_path, {"generation_config.json": {"forced_decoder_ids": [[1, None], [2, 50359]]}})
    assert load_generation_defaults(folder).forced_decoder_ids == ((1, None), (2, 50359))


@pytest.mark.parametrize("arguments, message", [
    ({"dtype": "float32"}, "cannot load a model in dtype 'float32': give one of torch.float32, torch.float16, "
                           "torch.bfloat16, torch.float64"),
    ({"dtype": torch.int32}, "cannot load a model in dtype torch.int32: give one of torch.float32, torch.float16, "
                             "torch.bfloat16, torch.float64"),
    # torch's own words list its 20 device types, or, for a backend this build lacks, run to 1,500 characters.
    ({"device": "gpu"}, "unknown device 'gpu': choose auto, cpu, cuda or cuda:N"),
    pytest.param({"device": "mps"}, "device 'mps' is not usable here: choose auto, cpu, cuda or cuda:N",
                 marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has Metal")),
    ({"device": "meta"}, "device 'meta' holds no data: choose auto, cpu, cuda or cuda:N"),
], ids=["dtype-as-string", "integer-dtype", "unknown-device", "backend-not-built", "meta"])  # fmt: skip
def test_load_whisper_refuses_a_dtype_or_device_it_cannot_load_in(arguments, message, single):
    with pytest.raises(DistilWhisperError) as error:
        load_whisper(single, **arguments)
    assert str(error.value) == message


def test_load_whisper_takes_device_auto(single):
    """faster-whisper's word, as load_model takes it: the GPU when torch sees one, else the CPU."""
    placed = load_whisper(single, device="auto").decoder.embed_tokens.weight.device
    assert placed.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_a_network_built_from_dims_has_the_sinusoid_positions_transformers_gives(single):
    """Built off the meta device, the encoder fills its fixed positions itself (checkpoints store them too)."""
    stored = load_file(single / "model.safetensors")["model.encoder.embed_positions.weight"]
    built = Whisper(load_dims(single)).encoder.embed_positions.weight
    torch.testing.assert_close(built, stored, rtol=0, atol=1e-6)


def test_loading_imports_no_compiler(single):
    """A first load in a fresh process stays clear of torch._dynamo (0.8 s to import): nothing random runs on the
    meta device, where torch would import it."""
    code = (
        "import sys; from distilwhisper.weights import load_whisper; load_whisper(sys.argv[1]); "
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(single)], check=True, capture_output=True, text=True, timeout=120)
