"""torch.compile at the edges: the decoder's step over the static cache and, on a GPU, the encoder for its 30 s window.

Every compiled call has fixed shapes, so each shape compiles once and, on CUDA, runs as a CUDA graph
(`mode="reduce-overhead"`): the encoder sees (batch, n_mels, 3000) log-mel, the decoder step (batch, k)
tokens at k positions given as a tensor (k = 1 for greedy decoding, k > 1 for a speculative verify step,
one graph per k). The policy that keeps shapes fixed lives here too: a batch is padded up to a power of two
(`pad_to_bucket`), so a batch of 5 and one of 7 share the graphs of 8; a batch that is no bucket (a later
timestamp pass over some windows) runs eagerly; a speculative draft proposes a fixed number of tokens a
round. The prompt's prefill stays eager: it runs once per batch, and compiling it would only add a graph.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .decoding import Step
from .model import Whisper
from .speculative import Assistant, Fixed, Heuristic, Schedule

# Compiled, every speculative round proposes this many tokens: each other count would be a graph of its own.
COMPILED_DRAFT_TOKENS = 5


@dataclass(frozen=True)
class Steps:
    """What the decoding loops call: `encoder(mel)` -> audio features, `decoder(tokens, input_pos, filled)` ->
    logits, and with an assistant its `draft` step and the draft-length `schedule`.

    Outputs of a compiled step on CUDA live in the CUDA graph's memory: read them before the next call.
    """

    encoder: Callable[[Tensor], Tensor]
    decoder: Step
    draft: Step | None = None
    schedule: Schedule = field(default_factory=Heuristic)
    eager: "Steps | None" = None  # compiled steps: the model's own, for a batch that is no bucket

    @property
    def compiled(self) -> bool:
        return self.eager is not None

    def bucket(self, batch: int) -> int:
        """The batch a compiled step runs for `batch` inputs (padded up); eager steps take any batch as it is."""
        return batch_bucket(batch) if self.compiled else batch

    def for_batch(self, batch: int) -> "Steps":
        """These steps if they take a batch of this size as it is, else the eager ones."""
        return self if self.eager is None or batch == batch_bucket(batch) else self.eager


def eager_steps(model: Whisper, assistant: Assistant | None = None) -> Steps:
    return Steps(model.encoder, model.decoder, None if assistant is None else assistant.decoder)


def compiled_steps(model: Whisper, assistant: Assistant | None = None) -> Steps:
    """The model's encoder and decoder step, compiled, and the `assistant`'s draft step if it compiles (see
    `Assistant.compiles`); the first call of each shape pays the compilation (seconds to a minute; see the
    docs), later calls of that shape reuse it."""
    eager = eager_steps(model, assistant)
    on_cuda = model.decoder.embed_tokens.weight.device.type == "cuda"
    # dynamic=False: a new shape (another bucket, another k) gets its own graph rather than a dynamic one.
    # Each is one more compiled entry of the same Decoder.forward code, as is every decoder compiled in this
    # process (a draft's, another model's): dynamo's default limit of 8 per code would soon refuse them.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    # CUDA graphs replay a step's hundreds of kernel launches as one. On the CPU, freezing lets inductor fold the
    # decoder's weights into its graph, pre-packed for oneDNN: a step of several rows (a batch, a verify pass)
    # runs faster than MKL's GEMM on them (bench/RESULTS.md), at the cost of a second copy of the decoder's
    # weights. The CPU's encoder stays eager: its GEMMs are MKL's either way, and compiled it ran slower
    # (bench/RESULTS.md), besides costing seconds of compilation.
    step_options = {"mode": "reduce-overhead"} if on_cuda else {"options": {"freezing": True}}

    def compile_step(decoder: torch.nn.Module) -> Step:
        compiled = torch.compile(decoder, fullgraph=True, dynamic=False, **step_options)

        def step(tokens: Tensor, input_pos: Tensor, filled: int | None = None) -> Tensor:
            return compiled(tokens, input_pos)  # without `filled`: one shape every step

        return step

    encoder = torch.compile(model.encoder, fullgraph=True, dynamic=False, mode="reduce-overhead") if on_cuda else model.encoder
    draft = None
    if assistant is not None:
        draft = compile_step(assistant.decoder) if assistant.compiles else assistant.decoder
    return Steps(encoder, compile_step(model.decoder), draft, Fixed(COMPILED_DRAFT_TOKENS, same_shape=True), eager)


def batch_bucket(batch: int) -> int:
    """The power of two at or above `batch`: how many sequences a compiled step decodes."""
    return 1 << (batch - 1).bit_length()


def pad_to_bucket(rows: Tensor, steps: Steps) -> Tensor:
    """`rows` with copies of the last one appended up to the batch `steps` run: decoded, then dropped."""
    return torch.cat([rows, rows[-1:].expand(steps.bucket(len(rows)) - len(rows), *rows.shape[1:])])
