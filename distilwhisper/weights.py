"""Find a checkpoint (local folder, hub repo id or short name), read its config, load its tensors into `Whisper`.

Only the Hugging Face layout is read: `config.json`, `generation_config.json`, `model.safetensors` (or shards
listed in `model.safetensors.index.json`) and the tokenizer files. Loading is strict: every tensor the model
needs must be there with its shape, and nothing else may be.
"""

import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch.overrides import TorchFunctionMode

from .devices import usable_device
from .errors import DistilWhisperError, first_line, is_whole_number
from .model import Decoder, Encoder, ModelDims, Whisper

# What a transcription needs from a hub repository; nothing else is downloaded.
CHECKPOINT_FILES = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",
    "tokenizer.json",
    "vocab.json",
    "added_tokens.json",
    "normalizer.json",  # the English spelling map that `distilwhisper.evaluate` normalises WER text with
]

# The names people type, as faster-whisper takes them (its utils._MODELS keys; "large" is the newest large,
# "turbo" is openai-whisper's name for large-v3-turbo), mapped to the Hugging Face repos they were made from.
MODEL_NAMES = {
    "tiny.en": "openai/whisper-tiny.en",
    "tiny": "openai/whisper-tiny",
    "base.en": "openai/whisper-base.en",
    "base": "openai/whisper-base",
    "small.en": "openai/whisper-small.en",
    "small": "openai/whisper-small",
    "medium.en": "openai/whisper-medium.en",
    "medium": "openai/whisper-medium",
    "large-v1": "openai/whisper-large",
    "large-v2": "openai/whisper-large-v2",
    "large-v3": "openai/whisper-large-v3",
    "large": "openai/whisper-large-v3",
    "large-v3-turbo": "openai/whisper-large-v3-turbo",
    "turbo": "openai/whisper-large-v3-turbo",
    "distil-small.en": "distil-whisper/distil-small.en",
    "distil-medium.en": "distil-whisper/distil-medium.en",
    "distil-large-v2": "distil-whisper/distil-large-v2",
    "distil-large-v3": "distil-whisper/distil-large-v3",
    "distil-large-v3.5": "distil-whisper/distil-large-v3.5",
}

# Checkpoint keys are our parameter names behind "model.", except the output projection, which sits at the
# checkpoint's top level and in our decoder (it produces the decoder's logits).
PREFIX = "model."
ENCODER, DECODER = "encoder.", "decoder."  # our names of the two halves
OUTPUT_PROJECTION = {"proj_out.weight": "decoder.proj_out.weight"}
# Weights that multiply activations (x @ W.T). On the CPU they are stored transposed in memory (same
# shape, column-major strides): MKL's one-token GEMV then streams W.T row by row, about twice as fast
# for the vocabulary projection and the MLPs, and the encoder's GEMMs gain too. Only in float32: half
# precision GEMMs on the CPU are slower from that layout. state_dict() hands out row-major copies of them
# (`_row_major_state`), so it saves with safetensors as is.
MATMUL_WEIGHTS = ("_proj.weight", "fc1.weight", "fc2.weight", "embed_tokens.weight", "proj_out.weight")
# The dtypes the network can be loaded in (it computes in the dtype of its weights).
LOAD_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@dataclass(frozen=True)
class GenerationDefaults:
    """The decoding settings a checkpoint ships in generation_config.json (or config.json)."""

    suppress_tokens: tuple[int, ...]
    begin_suppress_tokens: tuple[int, ...]
    # What a fine-tuned checkpoint decodes by default: `language` (a code, a name or "<|xx|>") and `task`,
    # or, in older checkpoints, forced_decoder_ids: [[1, language id], [2, task id], [3, <|notimestamps|>]].
    language: str | None = None
    task: str | None = None
    forced_decoder_ids: tuple[tuple[int, int | None], ...] = ()
    max_length: int | None = None  # decoder positions generate() fills by default, prompt included
    is_multilingual: bool | None = None  # False for English-only (.en) checkpoints; older configs lack it
    language_tokens: tuple[int, ...] = ()  # lang_to_id's ids: the languages detection chooses from
    # With timestamps, how late the first one may be, in 0.02 s steps (50 in openai's checkpoints; None: any).
    max_initial_timestamp_index: int | None = None
    # Word timing: the cross-attention heads that follow the audio, (decoder layer, head), and the width of the
    # median filter over their weights (config.json's median_filter_width, the model config's, as transformers reads it).
    alignment_heads: tuple[tuple[int, int], ...] = ()
    median_filter_width: int = 7
    # Beam search's scoring of finished hypotheses and when it stops, as transformers reads them (its defaults).
    length_penalty: float = 1.0
    early_stopping: bool | str = False  # True, False or "never"


def resolve_model_dir(
    name_or_path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    role: str = "model",
) -> Path:
    """A local folder as it is (even one named like a short name); a short name (MODEL_NAMES) or a hub repo id
    is fetched into (or found in) the HF cache. Messages call it `role` ("assistant" for a draft model).

    `HF_HUB_OFFLINE=1` makes this read the cache only.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = MODEL_NAMES.get(str(name_or_path), str(name_or_path))
    if "/" not in name and not path.exists():
        raise DistilWhisperError(
            f"unknown {role} '{name}': give a checkpoint folder, a hub repo id (owner/name) "
            f"or one of {', '.join(MODEL_NAMES)}"
        )
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise DistilWhisperError(f"{role} '{name}' is neither a checkpoint folder nor a hub repo id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, revision=revision, cache_dir=None if cache_dir is None else os.fspath(cache_dir), allow_patterns=CHECKPOINT_FILES))
    except LocalEntryNotFoundError:  # not cached, and the hub out of reach: the hub's words for it are cryptic
        raise DistilWhisperError(
            f"{role} '{name}' is not in the local hub cache, and the hub cannot be reached (no network, or "
            "HF_HUB_OFFLINE=1): pass a checkpoint folder, or download it once with network"
        ) from None
    except Exception as e:  # the hub raises many other kinds: missing repo, auth...
        reason = first_line(e) or type(e).__name__
        raise DistilWhisperError(f"could not get {role} '{name}' from the hub: {reason}") from None


def read_json(path: Path) -> dict:
    """A checkpoint's JSON file, which holds an object at its top level (every one we read does)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))  # JSON is UTF-8 (RFC 8259), whatever the locale says
    except (OSError, ValueError) as e:
        raise DistilWhisperError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise DistilWhisperError(f"{path} must hold a JSON object at its top level, got {json.dumps(data):.40}")
    return data


def load_dims(model_dir: str | os.PathLike) -> ModelDims:
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise DistilWhisperError(f"{model_dir} is not a Whisper checkpoint folder: it has no config.json")
    config = read_json(config_path)
    if config.get("model_type") != "whisper":
        raise DistilWhisperError(f"{config_path} describes a '{config.get('model_type')}' model, not 'whisper'")
    try:
        return ModelDims.from_config(config)
    except KeyError as e:
        raise DistilWhisperError(f"{config_path} lacks the field {e}") from None
    except (TypeError, ValueError) as e:  # from_config's messages name the field
        raise DistilWhisperError(f"{config_path}: {e}") from None


def load_generation_defaults(model_dir: str | os.PathLike) -> GenerationDefaults:
    """generation_config.json wins where it has a field; older checkpoints keep them in config.json."""
    model_dir = Path(model_dir)
    n_vocab = load_dims(model_dir).n_vocab
    config_path = model_dir / "config.json"
    config = read_json(config_path)
    median_filter_width = config.get("median_filter_width", 7)
    source = dict.fromkeys(config, config_path)  # the file each field comes from, for messages
    generation_path = model_dir / "generation_config.json"
    if generation_path.is_file():
        generation = {k: v for k, v in read_json(generation_path).items() if v is not None}
        config |= generation
        source |= dict.fromkeys(generation, generation_path)
    _check_generation_fields(config, source, n_vocab)
    if not (is_whole_number(median_filter_width) and median_filter_width > 0):
        raise DistilWhisperError(f"{config_path}: median_filter_width must be a positive integer, got {json.dumps(median_filter_width):.40}")
    return GenerationDefaults(
        suppress_tokens=tuple(config.get("suppress_tokens") or ()),
        begin_suppress_tokens=tuple(config.get("begin_suppress_tokens") or ()),
        language=config.get("language"),
        task=config.get("task"),
        forced_decoder_ids=tuple((position, token) for position, token in config.get("forced_decoder_ids") or ()),
        max_length=config.get("max_length"),
        is_multilingual=config.get("is_multilingual"),
        language_tokens=tuple(sorted((config.get("lang_to_id") or {}).values())),
        max_initial_timestamp_index=config.get("max_initial_timestamp_index"),
        alignment_heads=tuple((layer, head) for layer, head in config.get("alignment_heads") or ()),
        median_filter_width=median_filter_width,
        length_penalty=config.get("length_penalty", 1.0),
        early_stopping=config.get("early_stopping", False),
    )


def _check_generation_fields(config: dict, source: dict[str, Path], n_vocab: int) -> None:
    """Refuse, naming its file, a field that would otherwise fail mid-decoding (an id outside the vocabulary
    indexes past the logits)."""

    def check(key: str, ok: Callable[[object], bool], what: str) -> None:
        value = config.get(key)
        if value is not None and not ok(value):
            raise DistilWhisperError(f"{source[key]}: {key} must be {what}, got {json.dumps(value):.60}")

    def check_ids(key: str, ids: list) -> None:
        bad = [i for i in ids if not (is_whole_number(i) and 0 <= i < n_vocab)]
        if bad:
            raise DistilWhisperError(
                f"{source[key]}: {key} holds {json.dumps(bad[0])}, not a token id (0 to {n_vocab - 1}: config.json's vocab_size)"
            )

    for key in ("suppress_tokens", "begin_suppress_tokens"):
        check(key, lambda v: isinstance(v, list), "a list of token ids")
        check_ids(key, config.get(key) or [])
    check("lang_to_id", lambda v: isinstance(v, dict), 'a map of language tokens to ids ({"<|en|>": 50259, ...})')
    check_ids("lang_to_id", list((config.get("lang_to_id") or {}).values()))
    check("forced_decoder_ids", lambda v: isinstance(v, list) and all(map(_is_forced_pair, v)), "a list of [position, token id] pairs")
    # A null token leaves its position (the language, say) to the caller or to detection, as in transformers.
    check_ids("forced_decoder_ids", [token for _, token in config.get("forced_decoder_ids") or () if token is not None])
    check("max_length", lambda v: is_whole_number(v) and v > 0, "a positive integer")
    check("max_initial_timestamp_index", lambda v: is_whole_number(v) and v >= 0, "a non-negative integer or null")
    check("language", lambda v: isinstance(v, str), "a string")
    check("task", lambda v: isinstance(v, str), "a string")
    check("is_multilingual", lambda v: isinstance(v, bool), "true or false")
    check("alignment_heads", lambda v: isinstance(v, list) and all(_is_head(pair) for pair in v),
          "a list of [decoder layer, head] pairs")  # fmt: skip
    check("length_penalty", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number")
    check("early_stopping", lambda v: isinstance(v, bool) or v == "never", 'true, false or "never"')


def _is_head(pair) -> bool:
    return isinstance(pair, list) and len(pair) == 2 and all(is_whole_number(i) and i >= 0 for i in pair)


def _is_forced_pair(pair) -> bool:
    return isinstance(pair, list) and len(pair) == 2 and is_whole_number(pair[0]) and pair[0] >= 0


def checkpoint_files(model_dir: Path) -> list[Path]:
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map", {})
        if not isinstance(weight_map, dict) or not all(isinstance(shard, str) for shard in weight_map.values()):
            raise DistilWhisperError(f"{index}: weight_map must map tensor names to shard file names, got {json.dumps(weight_map):.40}")
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (model_dir / s).is_file()]
        if not shards or missing:
            raise DistilWhisperError(f"{index} lists shards that are not there: {', '.join(missing) or 'none listed'}")
        return [model_dir / s for s in shards]
    raise DistilWhisperError(f"{model_dir} has no model.safetensors (nor model.safetensors.index.json)")


def stored_tensors(files: list[Path], wanted=lambda name: True) -> Iterator[tuple[str, torch.Tensor]]:
    """(our parameter name, tensor as stored) for each tensor of the files whose name is `wanted`, one at a time."""
    for file in files:
        try:
            with safe_open(file, framework="pt", device="cpu") as f:
                for key in f.keys():
                    name = OUTPUT_PROJECTION.get(key, key.removeprefix(PREFIX))
                    if wanted(name):
                        yield name, f.get_tensor(key)
        except (SafetensorError, OSError) as e:
            raise DistilWhisperError(f"cannot read {file}: {e}") from None


def read_tensors(files: list[Path], dtype: torch.dtype, device: torch.device, wanted=lambda name: True) -> dict[str, torch.Tensor]:
    """Every (`wanted`) tensor in the files, keyed by our parameter names, cast to `dtype` on `device`."""
    return {name: _place(t, dtype, device, name.endswith(MATMUL_WEIGHTS)) for name, t in stored_tensors(files, wanted)}


def checkpoint_key(name: str) -> str:
    """Our parameter name as the checkpoint spells it, for messages."""
    return next((key for key, ours in OUTPUT_PROJECTION.items() if ours == name), PREFIX + name)


def _place(tensor: torch.Tensor, dtype: torch.dtype, device: torch.device, is_matmul_weight: bool) -> torch.Tensor:
    """Cast and move in one copy; matmul weights on the CPU land column-major (see MATMUL_WEIGHTS)."""
    if not (is_matmul_weight and device.type == "cpu" and dtype == torch.float32 and tensor.ndim == 2):
        return tensor.to(device=device, dtype=dtype)
    return torch.empty(tensor.shape[::-1], dtype=dtype, device=device).T.copy_(tensor)


def untie_if_needed(dims: ModelDims, tensors: dict[str, torch.Tensor]) -> ModelDims:
    """Decide, as transformers does, whether the output projection is the token embedding.

    config.json's `tie_word_embeddings` (default true) says so, but a checkpoint that stores its own
    proj_out.weight with other values than the embedding keeps it. A stored copy equal to the embedding
    is dropped, so the two share memory.
    """
    projection = tensors.get(OUTPUT_PROJECTION["proj_out.weight"])
    if not dims.tie_word_embeddings or projection is None:
        return dims
    embedding = tensors.get("decoder.embed_tokens.weight")
    if embedding is not None and projection.shape == embedding.shape and torch.equal(projection, embedding):
        del tensors[OUTPUT_PROJECTION["proj_out.weight"]]
        return dims
    return replace(dims, tie_word_embeddings=False)


def check_tensors(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path, prefix: str = "") -> None:
    """Name the first offending key: missing, unexpected, of the wrong shape, or holding NaN/inf.

    `tensors` are keyed by our names, which are `module`'s own behind `prefix` ("decoder." for a Decoder).
    """
    expected = {prefix + name: tuple(p.shape) for name, p in module.state_dict().items()}
    missing = sorted(expected.keys() - tensors.keys())
    if missing:
        raise DistilWhisperError(f"{source}: missing tensor {checkpoint_key(missing[0])} ({len(missing)} missing in all)")
    unexpected = sorted(tensors.keys() - expected.keys())
    if unexpected:
        raise DistilWhisperError(f"{source}: unexpected tensor {unexpected[0]} ({len(unexpected)} unexpected in all)")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise DistilWhisperError(
                f"{source}: tensor {checkpoint_key(name)} has shape {tuple(tensors[name].shape)}, config.json implies {shape}"
            )
    bad = next((name for name, t in tensors.items() if not torch.isfinite(t).all()), None)
    if bad is not None:
        raise DistilWhisperError(f"{source}: tensor {checkpoint_key(bad)} holds NaN or infinite values")


def _checked_placement(dtype: torch.dtype, device: str | torch.device) -> torch.device:
    """`device` as a torch.device, once it and `dtype` are known to work: torch would fail mid-load otherwise."""
    if dtype not in LOAD_DTYPES:
        names = ", ".join(map(str, LOAD_DTYPES))
        raise DistilWhisperError(f"cannot load a model in dtype {dtype!r}: give one of {names}")
    return usable_device(device)


def load_whisper(
    model_dir: str | os.PathLike, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> Whisper:
    """Build the network from config.json and fill it from the safetensors, without a random init first."""
    model_dir = Path(model_dir)
    device = _checked_placement(dtype, device)
    dims = load_dims(model_dir)
    tensors = read_tensors(checkpoint_files(model_dir), dtype, device)
    dims = untie_if_needed(dims, tensors)
    with torch.device("meta"), WithoutInit():
        model = Whisper(dims)
    return _fill(model, tensors, model_dir)


def load_decoder(
    model_dir: str | os.PathLike, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> Decoder:
    """Only the decoder of a checkpoint: of a whole Whisper (its encoder's tensors are not even read), or of a
    decoder alone, as transformers' WhisperForCausalLM saves one (`model.decoder.*`, `proj_out.weight`)."""
    model_dir = Path(model_dir)
    device = _checked_placement(dtype, device)
    dims = load_dims(model_dir)
    tensors = read_tensors(checkpoint_files(model_dir), dtype, device, lambda name: not name.startswith(ENCODER))
    dims = untie_if_needed(dims, tensors)
    with torch.device("meta"), WithoutInit():
        decoder = Decoder(dims)
    return _fill(decoder, tensors, model_dir, DECODER)



def encoder_equals(model_dir: str | os.PathLike, encoder: Encoder) -> bool | None:
    """Whether the checkpoint's encoder holds exactly `encoder`'s weights (compared in `encoder`'s dtype); None
    when the checkpoint has no encoder. Reads one tensor at a time, so no second encoder is ever in memory."""
    ours, seen = encoder.state_dict(), 0
    for name, stored in stored_tensors(checkpoint_files(Path(model_dir)), lambda name: name.startswith(ENCODER)):
        mine = ours.get(name.removeprefix(ENCODER))
        if mine is None or mine.shape != stored.shape or not torch.equal(stored.to(mine.device, mine.dtype), mine):
            return False
        seen += 1
    return None if seen == 0 else seen == len(ours)


class WithoutInit(TorchFunctionMode):
    """Modules built under it skip torch.nn.init's random init: their weights come from a checkpoint. On the meta
    device that init computes nothing, but its first random op imports torch._dynamo, 0.8 s of every first load."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":  # each takes the tensor first and returns it
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def _fill(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path, prefix: str = ""):
    check_tensors(module, tensors, source, prefix)
    module.load_state_dict({name.removeprefix(prefix): t for name, t in tensors.items()}, strict=True, assign=True)
    module.register_state_dict_post_hook(_row_major_state)
    return module.eval().requires_grad_(False)


def _row_major_state(module: torch.nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for name, tensor in state_dict.items():
        state_dict[name] = tensor.contiguous()


def int8_decoder(decoder: Decoder) -> Decoder:
    """A copy of `decoder` with int8 linear layers (`int8_linears`): the self-draft of speculative decoding. The
    embedding tables are shared; a tied output projection gets its own int8 copy of the token embedding."""
    import copy

    shared = [decoder.embed_tokens.weight, decoder.embed_positions.weight]
    draft = copy.deepcopy(decoder, memo={id(t): t for t in shared})
    int8_linears(draft)
    return draft


def int8_linears(module: torch.nn.Module) -> torch.nn.Module:
    """`module` (on the CPU) with every linear layer an `Int8Linear`, made in place from its float weights; a
    decoder's tied output projection becomes a linear layer of its own first (the embedding stays float)."""
    for decoder in [m for m in module.modules() if isinstance(m, Decoder) and m.proj_out is None]:
        vocab, width = decoder.embed_tokens.weight.shape
        with WithoutInit():
            decoder.proj_out = torch.nn.Linear(width, vocab, bias=False, device="meta")
        decoder.proj_out.weight = decoder.embed_tokens.weight
    for name, child in module.named_children():
        setattr(module, name, Int8Linear(child) if isinstance(child, torch.nn.Linear) else int8_linears(child))
    return module


def is_int8(module: torch.nn.Module) -> bool:
    """Whether `int8_linears` made `module`'s linear layers int8."""
    return any(isinstance(m, Int8Linear) for m in module.modules())


# Activations in [-1, 1] as 7-bit unsigned integers (0 to 128 around 64), so that the AVX2 kernel's sums of two
# products in 16 bits cannot saturate: torch's `reduce_range`.
ACTIVATION_SCALE, ACTIVATION_ZERO_POINT = 2 / 127, 64


class Int8Linear(torch.nn.Module):
    """A linear layer in int8: weights with one scale per output row, activations with one scale per token,
    products summed in int32 (fbgemm's int8 GEMM, on packed weights) and scaled back to float.

    | what        | as                                | why                                                          |
    |-------------|-----------------------------------|--------------------------------------------------------------|
    | weights     | int8, symmetric, a scale per row  | made once at load time from the float checkpoint             |
    | activations | 7 bits, a scale per token         | one loud frame must not cost the other 1,499 their precision |
    | output      | float32, or the input's dtype     | the rest of the network (norms, softmax, caches) stays float |

    fbgemm quantises its whole input with one scale, so each row is scaled to an absolute maximum of 1 first and
    scaled back after: per-token quantisation from a per-tensor kernel. (One scale for the whole input, torch's
    dynamic quantisation as it comes, lost words and punctuation on whisper-base's encoder.) The scale is fixed
    at [-1, 1] rather than read from the input's minimum and maximum, so a row's product is the same whoever
    shares its batch (one token in a greedy step, five in a speculative check). fbgemm reads float32, so a
    bfloat16 network (the bfloat16 model's int8 self-draft) converts on the way in and out."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127
        zero_points = torch.zeros(len(scales), dtype=torch.long)
        # torch announces that its quantised tensors will go (to torchao): nothing a user can act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = torch.quantize_per_channel(weight, scales.double(), zero_points, 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(rows, None)
        self.bias = None if linear.bias is None else linear.bias.detach().float()
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.float()
        loudest = rows.abs().amax(dim=-1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
        y = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
            rows / loudest, ACTIVATION_SCALE, ACTIVATION_ZERO_POINT, self.packed
        )
        y = y * loudest if self.bias is None else torch.addcmul(self.bias, y, loudest)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
