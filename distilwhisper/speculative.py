"""Speculative decoding: a small draft decoder proposes tokens, the main decoder checks them all in one pass.

The result is exactly the main model's greedy output: every token kept is the main model's own
rule-processed argmax given the tokens before it. The draft only decides how many of those argmaxes one
main-decoder pass yields: it proposes k tokens greedily, the main decoder scores the current token and the
k proposals at once (k + 1 positions), the longest prefix where the proposals equal the main model's choices
is kept, plus the main model's own choice at the first disagreement.

Both decoders keep static caches and every row of the batch has its own length, so "rolling back" a
rejected proposal is bookkeeping: the row's next position stays where its accepted tokens end, later
writes overwrite the rejected entries, and the causal mask keeps a query from reading anything beyond its
own position in the meantime.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .compiled import Steps
from .decoding import DecodingResult
from .errors import DistilWhisperError
from .model import Decoder, Encoder, Whisper
from .weights import encoder_equals, int8_decoder, load_decoder, load_dims, load_whisper, resolve_model_dir

START_DRAFT_TOKENS = 5  # k of the first round; it then adapts
MAX_DRAFT_TOKENS = 16  # a longer draft costs a longer verify pass and an ever smaller chance of all holding
SELF_DRAFT = "int8"  # the assistant that always exists: the main decoder itself, int8 (CPU, float32 models)


@dataclass
class Assistant:
    """The draft model: its decoder, and its own encoder only when that differs from the main model's."""

    decoder: Decoder
    encoder: Encoder | None = None  # None: the main model's encoder output feeds the draft decoder too
    # The draft is the main decoder itself at lower precision: it reads the main decoder's cross-attention caches
    # (the exact keys and values) rather than computing and holding a copy of its own.
    shares_cross_caches: bool = False
    # And, with those, its self-attention caches: the draft reads the exact keys/values of every accepted token and
    # needs no prompt pass of its own; what it writes (its last token and its proposals, each round) is at positions
    # the verify pass rewrites before the main model reads them, so the main model reads only its own.
    shares_self_caches: bool = False

    def features(self, mel: Tensor, main_features: Tensor) -> Tensor:
        return main_features if self.encoder is None else self.encoder(mel)


def apply_rules(rules: list, logits: Tensor, sequence: Tensor, prompt_length: int, lengths: dict[int, int]) -> None:
    """Whisper's logit rules on (batch, vocab) `logits` whose row b predicts generated token `lengths[b]`.

    Rows differ in length, and a rule sees a (rows, step) history, so rows are grouped by length; a rule's
    effect on a row depends only on that row, as in plain greedy. Rows not in `lengths` (finished) are left.
    """
    for length in sorted(set(lengths.values())):
        rows = [b for b, n in lengths.items() if n == length]
        if len(rows) == logits.shape[0]:  # the whole batch: edit in place, as greedy_decode does
            generated = sequence[:, prompt_length : prompt_length + length]
            for rule in rules:
                rule.apply(logits, generated)
            continue
        selected, generated = logits[rows], sequence[rows, prompt_length : prompt_length + length]
        for rule in rules:
            rule.apply(selected, generated)
        logits[rows] = selected


def next_draft_length(k: int, all_accepted: bool) -> int:
    """transformers' "heuristic" schedule: two more after a round where every proposal held, one fewer otherwise."""
    return min(k + 2, MAX_DRAFT_TOKENS) if all_accepted else max(k - 1, 1)


@torch.inference_mode()
def speculative_decode(
    model: Whisper,
    assistant: Assistant,
    audio_features: Tensor,
    draft_features: Tensor,
    prompt: list[int] | list[list[int]],
    eot: int,
    rules: list,
    max_new_tokens: int,
    no_speech: int | None = None,
    draft_tokens: int = START_DRAFT_TOKENS,
    adapt: bool = True,
    caches_ready: bool = False,
    steps: Steps | None = None,
    confidence: float | None = None,
    sot_index: int = 0,
) -> DecodingResult:
    """`greedy_decode`'s result, got with fewer main-decoder passes; also each sequence's acceptance rate.

    `prompt` is one for the batch or one per sequence, all of one length, as in `greedy_decode`, with
    <|startoftranscript|> at `sot_index`.
    `draft_features` is what the assistant's decoder attends to (`assistant.features(mel, audio_features)`).
    `draft_tokens` is k, the number of proposals per round; `adapt` lets it follow `next_draft_length`.
    `caches_ready`: the main decoder's caches already hold `audio_features` (detect_language filled them).
    `steps`: compiled twins of the main decoder (verify passes) and of the draft decoder (`steps.draft`);
    compiled, every round proposes `draft_tokens`, since each k would be a graph of its own.
    `confidence`: a round's drafting also stops once the draft gave each row's last proposal a probability
    below it (transformers' assistant_confidence_threshold); not with compiled steps.
    """
    batch, device = audio_features.shape[0], audio_features.device
    compiled = steps is not None and steps.compiled
    verify_step = steps.decoder if steps is not None else model.decoder
    draft_step = steps.draft if steps is not None and steps.draft is not None else assistant.decoder
    adapt = adapt and not compiled
    prompt_tokens = torch.tensor(prompt, device=device).expand(batch, -1)
    n_prompt, n_ctx = prompt_tokens.shape[1], model.dims.n_text_ctx
    if not caches_ready:
        model.decoder.setup_caches(audio_features)
    shares_self = assistant.shares_cross_caches and assistant.shares_self_caches
    assistant.decoder.setup_caches(draft_features, model.decoder if assistant.shares_cross_caches else None, shares_self)
    # The prompt and every token so far, index = position; room past the end for the last round's proposals.
    sequence = torch.full((batch, n_prompt + max_new_tokens + max(draft_tokens, MAX_DRAFT_TOKENS) + 2), eot, device=device)
    sequence[:, :n_prompt] = prompt_tokens
    prompt_positions = torch.arange(n_prompt, device=device)
    logits = model.decoder(sequence[:, :n_prompt], prompt_positions)
    if not shares_self:
        assistant.decoder(sequence[:, :n_prompt], prompt_positions)  # fills its cache; the first token is the main model's
    no_speech_probs = logits[:, sot_index].float().softmax(dim=-1)[:, no_speech].tolist() if no_speech is not None else [float("nan")] * batch

    # Round 0 is plain greedy: the prompt pass already holds the main model's first choice.
    logits = logits[:, -1:].float()
    first = choose(rules, logits, sequence, n_prompt, dict.fromkeys(range(batch), 0))[:, 0]
    sequence[:, n_prompt] = first
    sum_logprobs = log_probs(logits[:, 0], first).tolist()
    lengths = [1] * batch  # tokens generated; the last one is in no cache yet
    ended = (first == eot).tolist()
    proposed, accepted = [0] * batch, [0] * batch
    k = draft_tokens
    while True:
        active = {b: n for b, n in enumerate(lengths) if not ended[b] and n < max_new_tokens}
        if not active:
            break
        # More proposals than the roomiest row can still use would be wasted (but for a compiled step, a new shape).
        k_now = k if compiled else min(k, max(max_new_tokens - n for n in active.values()) - 1)
        current = torch.tensor([n_prompt + n - 1 for n in lengths], device=device)  # position of the last token
        # Compiled, every round proposes k tokens: a shorter round would be another shape.
        proposals = propose(draft_step, rules, sequence, current, n_prompt, active, k_now, n_ctx,
                            confidence=None if compiled else confidence, end=None if compiled else eot,
                            feed_previous=not shares_self)  # fmt: skip
        k_now = proposals.shape[1]

        # Verify: the last token and the k proposals in one pass; row b's output i predicts its token lengths[b] + i.
        window = current[:, None] + torch.arange(k_now + 1, device=device)
        logits = verify_step(sequence.gather(1, window), window.clamp(max=n_ctx - 1)).float()
        targets = choose(rules, logits, sequence, n_prompt, active)
        logprobs = log_probs(logits, targets).tolist()
        agree = (proposals == targets[:, :k_now]).cumprod(dim=1).sum(dim=1)
        # Tokens before the first end token (all of them if none), of the main model's choices and of the draft's.
        first_eot = ((targets == eot).cumsum(dim=1) == 0).sum(dim=1)
        draft_eot = ((proposals == eot).cumsum(dim=1) == 0).sum(dim=1)
        agree, first_eot, draft_eot = torch.stack([agree, first_eot, draft_eot]).tolist()  # one read from the device

        all_accepted = True
        for b, n in active.items():
            # The agreeing prefix and the main model's next token, up to an end token and max_new_tokens.
            count = min(agree[b] + 1, first_eot[b] + 1, max_new_tokens - n)
            sequence[b, n_prompt + n : n_prompt + n + count] = targets[b, :count]
            sum_logprobs[b] += sum(logprobs[b][:count])
            lengths[b] = n + count
            ended[b] = first_eot[b] < count
            # Proposals past the draft's own end token or past max_new_tokens were never candidates.
            offered = min(k_now, draft_eot[b] + 1, max_new_tokens - n)
            proposed[b] += offered
            accepted[b] += min(agree[b], offered)
            all_accepted &= agree[b] >= offered
        if adapt and k_now:
            k = next_draft_length(k, all_accepted)

    rows = [sequence[b, n_prompt : n_prompt + lengths[b]].tolist() for b in range(batch)]
    tokens = [row[:-1] if ended[b] else row for b, row in enumerate(rows)]
    # As in greedy_decode: the end token counts in the average.
    avg_logprobs = [total / (len(row) + 1) for total, row in zip(sum_logprobs, tokens)]
    return DecodingResult(tokens, avg_logprobs, no_speech_probs, [not e for e in ended], proposed, accepted)


def choose(rules: list, logits: Tensor, sequence: Tensor, n_prompt: int, lengths: dict[int, int]) -> Tensor:
    """Plain greedy's choice (batch, time) at each of the (batch, time, vocab) float `logits`, whose output i
    of row b predicts token lengths[b] + i (its history is in `sequence`): the rules, in place, then argmax."""
    for i in range(logits.shape[1]):
        apply_rules(rules, logits[:, i], sequence, n_prompt, {b: n + i for b, n in lengths.items()})
    return logits.argmax(dim=-1)


def log_probs(logits: Tensor, tokens: Tensor) -> Tensor:
    return logits.log_softmax(dim=-1).gather(-1, tokens[..., None])[..., 0]


def propose(
    draft: Callable[[Tensor, Tensor], Tensor], rules: list, sequence: Tensor, current: Tensor, n_prompt: int,
    lengths: dict[int, int], k: int, n_ctx: int, confidence: float | None = None, end: int | None = None,
    feed_previous: bool = True,
) -> Tensor:
    """k greedy proposals per row (batch, k) of the `draft` decoder step, written tentatively after each row's
    last token in `sequence`; fewer once every row's last one had a draft probability below `confidence`, or
    once every row has proposed `end` (the end token: no proposal after it could be accepted, and drafting on
    to k would make the last round of every decode the dearest).

    The draft's cache may lack the token before the last one (a last proposal that was accepted: proposals
    are scored, never fed back), so its first step feeds both (`feed_previous`); feeding a cached position again
    rewrites the same entry. A draft sharing the main decoder's self-attention caches has it there, exact, and
    must not overwrite it: the verify pass does not rewrite that position.
    """
    proposals = torch.empty(sequence.shape[0], k, dtype=torch.long, device=sequence.device)
    if k == 0:
        return proposals
    positions = current[:, None] + torch.arange(-1 if feed_previous else 0, 1, device=current.device)
    logits = draft(sequence.gather(1, positions), positions.clamp(max=n_ctx - 1))[:, -1:]
    if confidence is not None or end is not None:
        rows = torch.tensor(sorted(lengths), device=sequence.device)  # those still decoding
        ended = torch.zeros(len(rows), dtype=torch.bool, device=sequence.device)
    for j in range(k):
        scores = logits.float()
        token = choose(rules, scores, sequence, n_prompt, {b: n + j for b, n in lengths.items()})
        proposals[:, j] = token[:, 0]
        position = current[:, None] + 1 + j
        sequence.scatter_(1, position, token)  # its history for the next proposal and for the verify pass
        if j + 1 == k:
            break
        if confidence is not None:
            probability = scores[rows, -1].softmax(dim=-1).gather(1, token[rows])
            if (probability < confidence).all():  # the draft doubts every row: let the main model check these
                return proposals[:, : j + 1]
        if end is not None:
            ended |= token[rows, 0] == end
            if ended.all():
                return proposals[:, : j + 1]
        logits = draft(token, position.clamp(max=n_ctx - 1))
    return proposals


def load_assistant(
    name_or_path: str | os.PathLike, main: Whisper, cache_dir: str | os.PathLike | None = None, revision: str | None = None
) -> Assistant:
    """The draft model for `main`, on its device in its dtype: a checkpoint folder or hub id of a whole Whisper,
    or of a decoder alone (transformers' WhisperForCausalLM). An encoder equal to `main`'s, checked once
    here tensor by tensor, is not loaded: `main`'s encoder output feeds the draft decoder too.
    "int8" (SELF_DRAFT) is `main`'s own decoder with int8 weights, for a float32 model on the CPU."""
    device, dtype = main.decoder.embed_tokens.weight.device, main.decoder.embed_tokens.weight.dtype
    if str(name_or_path) == SELF_DRAFT:
        if (device.type, dtype) != ("cpu", torch.float32):
            raise DistilWhisperError(f"the {SELF_DRAFT} self-draft runs on the CPU in float32, not {device.type} {str(dtype)[6:]}")
        return Assistant(int8_decoder(main.decoder), shares_cross_caches=True, shares_self_caches=True)
    model_dir = resolve_model_dir(name_or_path, cache_dir=cache_dir, revision=revision, role="assistant")
    dims = load_dims(model_dir)
    if dims.n_vocab != main.dims.n_vocab or dims.n_text_ctx < main.dims.n_text_ctx:
        raise DistilWhisperError(
            f"assistant {name_or_path} does not fit the model: its vocabulary ({dims.n_vocab}) must be the model's "
            f"({main.dims.n_vocab}) and it must hold at least {main.dims.n_text_ctx} decoder positions ({dims.n_text_ctx})"
        )
    shared = encoder_equals(model_dir, main.encoder)
    if shared is False:
        if dims.n_mels != main.dims.n_mels:
            raise DistilWhisperError(f"assistant {name_or_path} reads {dims.n_mels} mel bins, the model {main.dims.n_mels}")
        own = load_whisper(model_dir, dtype, device)
        return Assistant(own.decoder, own.encoder)
    if (dims.d_model, dims.n_audio_ctx) != (main.dims.d_model, main.dims.n_audio_ctx):
        raise DistilWhisperError(
            f"assistant {name_or_path} has no encoder of its own and cannot read the model's: it needs "
            f"{dims.n_audio_ctx} audio positions of width {dims.d_model}, the model gives {main.dims.n_audio_ctx} of {main.dims.d_model}"
        )
    return Assistant(load_decoder(model_dir, dtype, device))
