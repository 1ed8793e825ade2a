"""torch.compile at the edges: the decoder's step over the static cache and, on a GPU, the encoder for its 30 s window.

Every compiled call has fixed shapes, so each shape compiles once and, on CUDA, runs as a CUDA graph
(`mode="reduce-overhead"`): the encoder sees (batch, n_mels, 3000) log-mel, the decoder step (batch, k)
tokens at k positions given as a tensor (k = 1 for greedy decoding, k > 1 for a speculative verify step,
one graph per k). The batch is padded up to a power of two (`batch_bucket`), so a batch of 5 and one of 7
share the graphs of 8, and inputs of a bucket never recompile. The prompt's prefill stays eager: it runs
once per batch, and compiling it would only add a graph.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .model import Decoder, Whisper


@dataclass(frozen=True)
class Steps:
    """What the decoding loops call: `encoder(mel)` -> audio features, `decoder(tokens, input_pos)` -> logits.

    Outputs of a compiled step on CUDA live in the CUDA graph's memory: read them before the next call.
    """

    encoder: Callable[[Tensor], Tensor]
    decoder: Callable[[Tensor, Tensor], Tensor]
    compiled: bool = False
    draft: Callable[[Tensor, Tensor], Tensor] | None = None  # the assistant's decoder step, compiled; None: eager

    def bucket(self, batch: int) -> int:
        """The batch a compiled step runs for `batch` inputs (padded up); eager steps take any batch as it is."""
        return batch_bucket(batch) if self.compiled else batch


def eager_steps(model: Whisper) -> Steps:
    return Steps(model.encoder, model.decoder)


def compiled_steps(model: Whisper, draft: Decoder | None = None) -> Steps:
    """The model's encoder and decoder step, compiled, and a speculative assistant's `draft` decoder step if
    given; the first call of each shape pays the compilation (seconds to a minute; see the README), later
    calls of that shape reuse it."""
    on_cuda = model.decoder.embed_tokens.weight.device.type == "cuda"
    # dynamic=False: a new shape (another bucket, another k) gets its own graph rather than a dynamic one.
    # Each is one more compiled entry of the same Decoder.forward code, as is every decoder compiled in this
    # process (a draft's, another model's): dynamo's default limit of 8 per code would soon refuse them.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    # CUDA graphs replay a step's hundreds of kernel launches as one. On the CPU, freezing lets inductor fold the
    # decoder's weights into its graph, pre-packed for oneDNN: a step of several rows (a batch, a verify pass)
    # runs 15-20% faster than MKL's GEMM on them (bench/RESULTS.md), at the cost of a second copy of the decoder's
    # weights. The CPU's encoder stays eager: its GEMMs are MKL's either way, and compiled it ran 7% slower at
    # batch 1 and 3% at batch 4 (whisper-base, 2026-11-28), besides costing seconds of compilation.
    step_options = {"mode": "reduce-overhead"} if on_cuda else {"options": {"freezing": True}}

    def compile_(module: torch.nn.Module, options: dict) -> Callable:
        return torch.compile(module, fullgraph=True, dynamic=False, **options)

    encoder = compile_(model.encoder, {"mode": "reduce-overhead"}) if on_cuda else model.encoder
    return Steps(encoder, compile_(model.decoder, step_options), compiled=True, draft=draft and compile_(draft, step_options))


def batch_bucket(batch: int) -> int:
    """The power of two at or above `batch`: how many sequences a compiled step decodes."""
    return 1 << (batch - 1).bit_length()
