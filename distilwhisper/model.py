"""The Whisper network, written out by hand.

Attribute names follow the Hugging Face checkpoint keys (`model.encoder.layers.0.self_attn.q_proj.weight`
is `Whisper.encoder.layers[0].self_attn.q_proj.weight`), so loading is a straight copy.

The decoder keeps a static key/value cache (gpt-fast style): buffers sized for the whole text context,
written in place at `input_pos`, so every decoding step has the same shapes and can be compiled.
Cross-attention keys/values depend only on the audio, so they are computed once per batch.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# Each size of ModelDims and the config.json field it is read from: a positive integer.
CONFIG_SIZES = {
    "n_mels": "num_mel_bins",
    "n_audio_ctx": "max_source_positions",
    "n_text_ctx": "max_target_positions",
    "n_vocab": "vocab_size",
    "d_model": "d_model",
    "encoder_layers": "encoder_layers",
    "encoder_heads": "encoder_attention_heads",
    "encoder_ffn": "encoder_ffn_dim",
    "decoder_layers": "decoder_layers",
    "decoder_heads": "decoder_attention_heads",
    "decoder_ffn": "decoder_ffn_dim",
}


@dataclass(frozen=True)
class ModelDims:
    """Every size of a Whisper network. `ModelDims.from_config(json.load(open("config.json")))` reads them
    from a Hugging Face config; openai's own `.pt` checkpoints (ModelDimensions) are not read: convert them
    to the Hugging Face layout first (transformers' convert_openai_to_hf.py)."""

    n_mels: int
    n_audio_ctx: int  # encoder positions: 1500 for 30 s of audio
    n_text_ctx: int  # decoder positions: 448
    n_vocab: int
    d_model: int
    encoder_layers: int
    encoder_heads: int
    encoder_ffn: int
    decoder_layers: int
    decoder_heads: int
    decoder_ffn: int
    # Most checkpoints reuse the token embedding as the output projection; fine-tunes may untie them.
    tie_word_embeddings: bool = True

    @classmethod
    def from_config(cls, config: dict) -> "ModelDims":
        """The dims of a Hugging Face WhisperConfig (config.json as a dict); a missing field raises KeyError,
        a field of the wrong type TypeError, sizes that cannot build a network ValueError (each naming the field)."""
        for key in CONFIG_SIZES.values():
            value = config[key]
            # bool is an int subclass in Python, but `true` is no size.
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{key} must be an integer, got {value!r}")
            if value <= 0:
                raise ValueError(f"{key} must be positive, got {value}")
        # The encoder's sinusoid positions fill d_model with two halves (sin, cos) of at least two channels.
        if config["d_model"] % 2 or config["d_model"] < 4:
            raise ValueError(f"d_model must be even and at least 4, got {config['d_model']}")
        for heads in ("encoder_attention_heads", "decoder_attention_heads"):
            if config["d_model"] % config[heads]:
                raise ValueError(f"d_model ({config['d_model']}) is not divisible by {heads} ({config[heads]})")
        if not isinstance(config.get("tie_word_embeddings", True), bool):
            raise TypeError(f"tie_word_embeddings must be true or false, got {config['tie_word_embeddings']!r}")
        sizes = {field: config[key] for field, key in CONFIG_SIZES.items()}
        return cls(**sizes, tie_word_embeddings=config.get("tie_word_embeddings", True))


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """Whisper's fixed encoder positions: sin on the first half of the channels, cos on the second."""
    log_timescale_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_timescale_increment * torch.arange(channels // 2))
    scaled_time = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=1)


class KVCache(nn.Module):
    """Preallocated keys/values of shape (batch, heads, positions, head_dim), updated in place.

    Allocated once for the largest batch seen; a smaller batch uses the first rows (`use(batch)`). Every
    batch size thus keeps one tensor at one address: a compiled step is not traced again for a batch it
    has seen, and a CUDA graph recorded over the cache stays valid when batches of other sizes come between.
    """

    def __init__(self, batch: int, heads: int, positions: int, head_dim: int, dtype: torch.dtype, device):
        super().__init__()
        shape = (batch, heads, positions, head_dim)
        # Ordinary tensors even when made under inference_mode: an inference tensor could not be updated
        # in place later under no_grad, so a plain forward() after a transcribe() would fail.
        with torch.inference_mode(False):
            self.full = (torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
        self.rows: dict[int, tuple[Tensor, Tensor]] = {}  # batch -> its views, made once
        self.register_buffer("k", self.full[0], persistent=False)
        self.register_buffer("v", self.full[1], persistent=False)

    def fits(self, shape: tuple[int, int, int, int], dtype: torch.dtype, device: torch.device) -> bool:
        """Whether its first rows can hold a cache of `shape`, dtype and device."""
        full = self.full[0]
        return full.shape[0] >= shape[0] and full.shape[1:] == shape[1:] and (full.dtype, full.device) == (dtype, device)

    def use(self, batch: int) -> None:
        """Make `k` and `v` the first `batch` rows."""
        if batch not in self.rows:
            self.rows[batch] = (self.full[0][:batch], self.full[1][:batch])
        self.k, self.v = self.rows[batch]

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if input_pos.ndim == 1:  # (time,): every row at the same positions
            self.k[:, :, input_pos] = k
            self.v[:, :, input_pos] = v
        else:  # (batch, time): each row at its own positions, as speculative decoding advances them
            rows = torch.arange(k.shape[0], device=k.device)[:, None]
            self.k[rows, :, input_pos] = k.transpose(1, 2)
            self.v[rows, :, input_pos] = v.transpose(1, 2)
        return self.k, self.v


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)  # a bias on keys cancels in softmax
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def heads(self, x: Tensor) -> Tensor:
        """(batch, time, d_model) -> (batch, heads, time, head_dim)"""
        return x.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.heads(self.k_proj(x)), self.heads(self.v_proj(x))

    def attend(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        out = F.scaled_dot_product_attention(self.heads(self.q_proj(x)), k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ffn: int):
        super().__init__()
        self.self_attn = Attention(d_model, n_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, ffn)
        self.fc2 = nn.Linear(ffn, d_model)
        self.final_layer_norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        h = self.self_attn_layer_norm(x)
        x = x + self.self_attn.attend(h, *self.self_attn.keys_values(h))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ffn: int):
        super().__init__()
        self.self_attn = Attention(d_model, n_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d_model)
        self.encoder_attn = Attention(d_model, n_heads)
        self.encoder_attn_layer_norm = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, ffn)
        self.fc2 = nn.Linear(ffn, d_model)
        self.final_layer_norm = nn.LayerNorm(d_model)
        self.self_cache: KVCache | None = None
        self.cross_cache: KVCache | None = None

    def forward(self, x: Tensor, input_pos: Tensor, mask: Tensor) -> Tensor:
        return self.listen(self.read_text(x, input_pos, mask))

    def read_text(self, x: Tensor, input_pos: Tensor, mask: Tensor) -> Tensor:
        """The first half of the layer: self-attention over the text so far (the cache updated at `input_pos`)."""
        assert self.self_cache is not None and self.cross_cache is not None, "Decoder.forward checks setup_caches ran"
        h = self.self_attn_layer_norm(x)
        k, v = self.self_cache.update(input_pos, *self.self_attn.keys_values(h))
        in_use = mask.shape[-1]  # the cache positions the mask covers (all, or those `filled` says are written)
        return x + self.self_attn.attend(h, k[:, :, :in_use], v[:, :, :in_use], mask)

    def listen(self, x: Tensor) -> Tensor:
        """The second half: cross-attention over the audio, then the MLP."""
        assert self.cross_cache is not None, "Decoder.forward checks setup_caches ran"
        h = self.encoder_attn_layer_norm(x)
        beams = len(h) // len(self.cross_cache.k)  # hypotheses per audio (beam search), else 1
        if beams > 1:  # an audio's hypotheses read its keys and values as one longer query, not a copy each
            h = h.unflatten(0, (-1, beams)).flatten(1, 2)
        cross = self.encoder_attn.attend(h, self.cross_cache.k, self.cross_cache.v)
        x = x + (cross.unflatten(1, (beams, -1)).flatten(0, 1) if beams > 1 else cross)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))

    def cross_attention_weights(self, x: Tensor, heads: list[int]) -> Tensor:
        """(batch, len(heads), time, audio positions): the softmax probabilities of these cross-attention heads for
        `x`, what `listen` reads (read_text's output). Computed as transformers' eager attention computes them
        (the query scaled before the product), for word timing (alignment.py); decoding never asks for them."""
        assert self.cross_cache is not None, "Decoder.forward checks setup_caches ran"
        attn = self.encoder_attn
        q = attn.heads(attn.q_proj(self.encoder_attn_layer_norm(x)))[:, heads]
        scale = q.shape[-1] ** -0.5
        return ((q * scale) @ self.cross_cache.k[:, heads].transpose(-1, -2)).float().softmax(dim=-1)


class Encoder(nn.Module):
    def __init__(self, dims: ModelDims):
        super().__init__()
        self.conv1 = nn.Conv1d(dims.n_mels, dims.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dims.d_model, dims.d_model, kernel_size=3, stride=2, padding=1)
        # Fixed sinusoids, but checkpoints store them, so they load like any weight. A network built on the meta
        # device, to be loaded, has nothing to fill (and computing them there would import torch._dynamo, 0.8 s).
        self.embed_positions = nn.Embedding(dims.n_audio_ctx, dims.d_model)
        if not self.embed_positions.weight.is_meta:
            with torch.no_grad():
                self.embed_positions.weight.copy_(sinusoids(dims.n_audio_ctx, dims.d_model))
        self.layers = nn.ModuleList(
            EncoderLayer(dims.d_model, dims.encoder_heads, dims.encoder_ffn) for _ in range(dims.encoder_layers)
        )
        self.layer_norm = nn.LayerNorm(dims.d_model)

    def forward(self, mel: Tensor) -> Tensor:
        """(batch, n_mels, 2 * n_audio_ctx) log-mel -> (batch, n_audio_ctx, d_model) audio features"""
        expected = (self.conv1.in_channels, 2 * self.embed_positions.num_embeddings)
        if mel.ndim != 3 or tuple(mel.shape[1:]) != expected:
            raise ValueError(f"expected log-mel of shape (batch, {expected[0]}, {expected[1]}), got {tuple(mel.shape)}")
        if mel.dtype != self.conv1.weight.dtype:
            raise TypeError(f"expected log-mel of the model's dtype {self.conv1.weight.dtype}, got {mel.dtype}")
        x = F.gelu(self.conv1(mel))
        # Contiguous as (batch, time, d_model): left as a transposed view, every residual add and layer norm of
        # the encoder would run on a strided layout (a whisper-base encoder 9% slower on the CPU).
        x = F.gelu(self.conv2(x)).transpose(1, 2).contiguous()
        x = x + self.embed_positions.weight
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)


class Decoder(nn.Module):
    def __init__(self, dims: ModelDims):
        super().__init__()
        self.embed_tokens = nn.Embedding(dims.n_vocab, dims.d_model)
        self.embed_positions = nn.Embedding(dims.n_text_ctx, dims.d_model)
        # Annotated as the list of DecoderLayers it acts as: a ModuleList types its items as bare Modules.
        self.layers: list[DecoderLayer] = nn.ModuleList(  # type: ignore[assignment]
            DecoderLayer(dims.d_model, dims.decoder_heads, dims.decoder_ffn) for _ in range(dims.decoder_layers)
        )
        self.layer_norm = nn.LayerNorm(dims.d_model)
        # Untied checkpoints keep their own output projection (the checkpoint's top-level proj_out.weight).
        self.proj_out = None if dims.tie_word_embeddings else nn.Linear(dims.d_model, dims.n_vocab, bias=False)
        self.n_text_ctx = dims.n_text_ctx
        self.causal_mask: Tensor | None
        self.register_buffer("causal_mask", None, persistent=False)  # made with the caches, on their device

    def setup_caches(self, audio_features: Tensor) -> None:
        """Make the caches hold this batch (allocated once, for the largest batch seen) and fill the
        cross-attention ones with the keys and values of `audio_features`, computed once per batch."""
        batch, dtype, device = audio_features.shape[0], audio_features.dtype, audio_features.device
        if self.causal_mask is None or self.causal_mask.device != device:
            self.causal_mask = torch.ones(self.n_text_ctx, self.n_text_ctx, dtype=torch.bool, device=device).tril()
        for layer in self.layers:
            layer.self_cache = _cache_for(layer.self_cache, self._cache_shape(layer, batch, self.n_text_ctx), dtype, device)
            shape = self._cache_shape(layer, batch, audio_features.shape[1])
            layer.cross_cache = _cache_for(layer.cross_cache, shape, dtype, device)
            k, v = layer.encoder_attn.keys_values(audio_features)
            layer.cross_cache.k.copy_(k)
            layer.cross_cache.v.copy_(v)

    def share_caches(self, other: "Decoder", self_attention: bool = False) -> None:
        """Read the cross-attention caches of `other`, a decoder of this shape whose caches hold this batch, instead
        of computing the same keys and values again; with `self_attention`, its self-attention caches too, which this
        decoder then writes into (speculative.py says when that is right)."""
        for layer, theirs in zip(self.layers, other.layers):
            assert theirs.self_cache is not None and theirs.cross_cache is not None, "other.setup_caches comes first"
            layer.cross_cache = theirs.cross_cache
            k = theirs.self_cache.k
            if self_attention:
                layer.self_cache = theirs.self_cache
            else:
                layer.self_cache = _cache_for(layer.self_cache, self._cache_shape(layer, k.shape[0], self.n_text_ctx), k.dtype, k.device)
        self.causal_mask = other.causal_mask

    def setup_beams(self, beams: int) -> None:
        """Decode `beams` hypotheses per audio from here on (beam search): rows a * beams .. a * beams + beams - 1 of
        the self-attention caches are audio a's, whose cross-attention keys and values they all read."""
        for layer in self.layers:
            assert layer.cross_cache is not None, "setup_caches comes first"
            audios, k = len(layer.cross_cache.k), layer.cross_cache.k
            layer.self_cache = _cache_for(layer.self_cache, self._cache_shape(layer, audios * beams, self.n_text_ctx), k.dtype, k.device)

    def reorder_caches(self, rows: Tensor, filled: int) -> None:
        """Row i of the self-attention caches becomes what row rows[i] held, in its first `filled` positions: each
        hypothesis of a beam search takes its parent's keys and values. In place, so the buffers stay where compiled
        steps read them."""
        for layer in self.layers:
            assert layer.self_cache is not None, "setup_caches comes first"
            for cache in (layer.self_cache.k, layer.self_cache.v):
                written = cache[:, :, :filled]
                written.copy_(written.index_select(0, rows))

    def _cache_shape(self, layer: DecoderLayer, batch: int, positions: int) -> tuple[int, int, int, int]:
        heads = layer.self_attn.n_heads
        return batch, heads, positions, self.embed_tokens.embedding_dim // heads

    def forward(self, tokens: Tensor, input_pos: Tensor, filled: int | None = None) -> Tensor:
        """(batch, time) tokens at positions `input_pos` -> (batch, time, n_vocab) logits.

        `input_pos` is (time,) for the whole batch, or (batch, time) when each row is at its own positions.
        Positions before `input_pos` must already be in the cache (earlier calls since `setup_caches`); the
        causal mask hides every later position, so what a row wrote there before (a rejected draft) is never read.
        `filled`: the cache positions written so far, these calls' included (the last position + 1); when given,
        self-attention reads only those rather than all n_text_ctx (the same logits, sooner). An eager loop knows
        it on the host; a compiled step leaves it out and keeps one shape.
        """
        if self.causal_mask is None:
            raise RuntimeError("call decoder.setup_caches(audio_features) before decoding")
        x = self.embed_tokens(tokens) + self.embed_positions(input_pos)
        mask = self.causal_mask[input_pos]
        if filled is not None:
            mask = mask[..., :filled]
        if input_pos.ndim == 2:
            mask = mask[:, None]  # (batch, 1, time, positions): one mask per row, shared by its heads
        for layer in self.layers:
            x = layer(x, input_pos, mask)
        x = self.layer_norm(x)
        # proj_out called as a module, so that a quantised copy of it (the int8 self-draft) runs as well.
        return x @ self.embed_tokens.weight.T if self.proj_out is None else self.proj_out(x)


def _cache_for(cache: KVCache | None, shape: tuple[int, int, int, int], dtype: torch.dtype, device: torch.device) -> KVCache:
    """`cache` set to its first `shape[0]` rows if it can hold them, else a new cache of `shape`."""
    if cache is None or not cache.fits(shape, dtype, device):
        cache = KVCache(*shape, dtype, device)
    cache.use(shape[0])
    return cache


class Whisper(nn.Module):
    """The whole network: `encoder(mel)` gives audio features, `decoder(tokens, input_pos)` logits.

    Build it from dims and fill it from a checkpoint yourself, or let `distilwhisper.load_whisper(folder)`
    do both:

        dims = ModelDims.from_config(json.loads(Path(folder, "config.json").read_text()))
        with torch.device("meta"):
            model = Whisper(dims)  # no memory, no random init
        model.load_state_dict(tensors, assign=True)  # our names: the checkpoint's keys without "model."

    `forward(mel, tokens)` gives teacher-forced logits in one call. For decoding, call
    `decoder.setup_caches(encoder(mel))` once per batch, then `decoder(tokens, input_pos)` step by step.
    """

    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        self.encoder = Encoder(dims)
        self.decoder = Decoder(dims)

    def forward(self, mel: Tensor, tokens: Tensor) -> Tensor:
        """Teacher-forced logits for `tokens` given the audio: one call, no cached state carried over.

        `tokens` is (batch, time) int64 (or int32) ids, one row per mel, at most n_text_ctx of them. Checked
        here, once per call, rather than in `Decoder.forward`, whose every decoding step would pay for it.
        """
        if not isinstance(tokens, Tensor) or tokens.dtype not in (torch.int64, torch.int32):
            got = tokens.dtype if isinstance(tokens, Tensor) else type(tokens).__name__
            raise TypeError(f"expected tokens as an int64 (or int32) tensor of token ids, got {got}")
        if tokens.ndim != 2 or tokens.numel() == 0 or tokens.shape[1] > self.dims.n_text_ctx:
            raise ValueError(
                f"expected non-empty tokens of shape (batch, time), time at most {self.dims.n_text_ctx}, got {tuple(tokens.shape)}"
            )
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= self.dims.n_vocab:
            raise ValueError(f"token ids must be in [0, {self.dims.n_vocab}), got ids from {low} to {high}")
        audio_features = self.encoder(mel)
        if tokens.shape[0] != audio_features.shape[0]:
            raise ValueError(f"expected one row of tokens per mel ({audio_features.shape[0]}), got {tokens.shape[0]}")
        self.decoder.setup_caches(audio_features)
        return self.decoder(tokens, torch.arange(tokens.shape[1], device=tokens.device), filled=tokens.shape[1])
