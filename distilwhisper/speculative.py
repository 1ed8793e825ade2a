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

A draft that is the main decoder itself at lower precision (the int8 self-draft) shares the main decoder's caches
(`Decoder.share_caches`): the cross-attention ones, since its keys and values would be the same, and the
self-attention ones, which it writes into. That is right because of the order of a round: what the draft writes
(its last token and its proposals) lies at positions that the verify pass rewrites before the main model reads
them, so the main model reads only its own keys and values, and the draft reads the exact ones of every accepted
token (it needs no prompt pass of its own).
"""

import os
from dataclasses import dataclass

import torch
from torch import Tensor

from .decoding import Decoding, Step, WindowResult, no_speech_probs
from .errors import DistilWhisperError
from .model import Decoder, Encoder, Whisper
from .weights import encoder_equals, int8_decoder, load_decoder, load_dims, load_whisper, resolve_model_dir

SELF_DRAFT = "int8"  # the assistant that always exists: the main decoder itself, int8 (CPU models)


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
    compiles: bool = True  # whether torch.compile can take its decoder step (the int8 self-draft's cannot)

    def setup_caches(self, main: Decoder, mel: Tensor, main_features: Tensor) -> None:
        """Make the draft's caches hold this batch, once the main decoder's hold it."""
        if self.shares_cross_caches:
            self.decoder.share_caches(main, self_attention=self.shares_self_caches)
        else:
            self.decoder.setup_caches(main_features if self.encoder is None else self.encoder(mel))


@dataclass(frozen=True)
class Heuristic:
    """transformers' "heuristic" draft length: k starts at `start`, grows by two after a round where every row
    accepted every proposal and shrinks by one otherwise, up to `most`. A round proposes no more than the roomiest
    row can still use, and stops drafting once every row has proposed the end token (no proposal after it could be
    accepted) or, with `confidence`, once the draft gave each row's last proposal a probability below it
    (transformers' assistant_confidence_threshold)."""

    start: int = 5
    most: int = 16  # a longer draft costs a longer verify pass and an ever smaller chance of all holding
    confidence: float | None = None
    same_shape = False

    def next(self, k: int, all_accepted: bool) -> int:
        return min(k + 2, self.most) if all_accepted else max(k - 1, 1)


@dataclass(frozen=True)
class Fixed:
    """k proposals a round. `same_shape`: exactly k every round, even past an end token or the room left, so that
    the draft and verify steps keep one shape (compiled steps)."""

    k: int
    same_shape: bool = False
    confidence = None

    @property
    def start(self) -> int:
        return self.k

    most = start

    def next(self, k: int, all_accepted: bool) -> int:
        return self.k


Schedule = Heuristic | Fixed


@dataclass
class Row:
    """One sequence's progress: its tokens generated so far (the last one in no cache yet), and its draft counts."""

    length: int
    ended: bool
    sum_logprob: float
    proposed: int = 0
    accepted: int = 0


@torch.inference_mode()
def speculative_decode(
    model: Whisper,
    assistant: Assistant,
    prompts: list[list[int]],
    decoding: Decoding,
    verify: Step | None = None,
    draft: Step | None = None,
    schedule: Schedule = Heuristic(),
) -> list[WindowResult]:
    """`greedy_decode`'s results, got with fewer main-decoder passes, with each row's draft counts.

    Both decoders' caches hold the rows' audio (`model.decoder.setup_caches`, then `assistant.setup_caches`).
    `verify` and `draft` are the two decoders' steps (default: the decoders themselves; compiled twins from
    `compiled.compiled_steps`), `schedule` how many tokens a round drafts.
    """
    device, eot, max_new_tokens = model.decoder.embed_tokens.weight.device, decoding.eot, decoding.max_new_tokens
    batch, n_prompt = len(prompts), len(prompts[0])
    # The prompt and every token so far, index = position; room past the end for the last round's proposals.
    room = max(schedule.start, schedule.most)
    sequence = torch.full((batch, n_prompt + max_new_tokens + room + 2), eot, device=device)
    sequence[:, :n_prompt] = torch.tensor(prompts, device=device)
    prompt_positions = torch.arange(n_prompt, device=device)
    logits = model.decoder(sequence[:, :n_prompt], prompt_positions, n_prompt)
    if not assistant.shares_self_caches:
        assistant.decoder(sequence[:, :n_prompt], prompt_positions, n_prompt)  # its cache; the first token is the main model's
    no_speech = no_speech_probs(logits, decoding)

    # Round 0 is plain greedy: the prompt pass already holds the main model's first choice.
    logits = logits[:, -1:].float()
    first = choose(decoding.rules, logits, sequence, n_prompt, dict.fromkeys(range(batch), 0))[:, 0]
    sequence[:, n_prompt] = first
    rows = [Row(1, token == eot, logprob) for token, logprob in zip(first.tolist(), log_probs(logits[:, 0], first).tolist())]
    speculation = Speculation(verify or model.decoder, draft or assistant.decoder, decoding, schedule, sequence, n_prompt,
                              model.dims.n_text_ctx, feed_previous=not assistant.shares_self_caches)  # fmt: skip
    k = schedule.start
    while active := {b: row.length for b, row in enumerate(rows) if not row.ended and row.length < max_new_tokens}:
        k_now, all_accepted = speculation.round(rows, active, k)
        if k_now:
            k = schedule.next(k, all_accepted)

    results = []
    for b, (row, p) in enumerate(zip(rows, no_speech)):
        tokens = sequence[b, n_prompt : n_prompt + row.length].tolist()
        tokens = tokens[:-1] if row.ended else tokens
        # As in greedy_decode: the end token counts in the average.
        results.append(WindowResult(tokens, row.sum_logprob / (len(tokens) + 1), p, not row.ended,
                                    proposed=row.proposed, accepted=row.accepted))  # fmt: skip
    return results


@dataclass
class Speculation:
    """One batch's rounds: the two steps, what decoding is asked, and `sequence`, every row's prompt and tokens."""

    verify: Step
    draft: Step
    decoding: Decoding
    schedule: Schedule
    sequence: Tensor  # (batch, positions): index = position
    n_prompt: int
    n_ctx: int
    # The draft's cache may lack the token before the last one (a last proposal that was accepted: proposals are
    # scored, never fed back), so a round's first draft step feeds both. A draft sharing the main decoder's
    # self-attention caches has it there, exact, and must not overwrite it: the verify pass does not rewrite it.
    feed_previous: bool

    def round(self, rows: list[Row], active: dict[int, int], k: int) -> tuple[int, bool]:
        """Draft k tokens for the `active` rows ({row: tokens generated}), verify them in one main-decoder pass and
        keep, per row, the agreeing prefix and the main model's next token. Returns the k drafted, and whether every
        row accepted every proposal."""
        eot, max_new_tokens, device = self.decoding.eot, self.decoding.max_new_tokens, self.sequence.device
        if not self.schedule.same_shape:  # more than the roomiest row can still use would be wasted
            k = min(k, max(max_new_tokens - n for n in active.values()) - 1)
        current = [self.n_prompt + row.length - 1 for row in rows]  # the position of each row's last token
        proposals = self.propose(current, active, k)
        k = proposals.shape[1]

        # Row b's output i predicts its token rows[b].length + i.
        window = torch.tensor(current, device=device)[:, None] + torch.arange(k + 1, device=device)
        logits = self.verify(self.sequence.gather(1, window), window.clamp(max=self.n_ctx - 1),
                             min(max(current) + k + 1, self.n_ctx)).float()  # fmt: skip
        targets = choose(self.decoding.rules, logits, self.sequence, self.n_prompt, active)
        logprobs = log_probs(logits, targets).tolist()
        agree = (proposals == targets[:, :k]).cumprod(dim=1).sum(dim=1)
        # Tokens before the first end token (all of them if none), of the main model's choices and of the draft's.
        first_eot = ((targets == eot).cumsum(dim=1) == 0).sum(dim=1)
        draft_eot = ((proposals == eot).cumsum(dim=1) == 0).sum(dim=1)
        agree, first_eot, draft_eot = torch.stack([agree, first_eot, draft_eot]).tolist()  # one read from the device

        all_accepted = True
        for b, n in active.items():
            row = rows[b]
            # The agreeing prefix and the main model's next token, up to an end token and max_new_tokens.
            count = min(agree[b] + 1, first_eot[b] + 1, max_new_tokens - n)
            self.sequence[b, self.n_prompt + n : self.n_prompt + n + count] = targets[b, :count]
            row.sum_logprob += sum(logprobs[b][:count])
            row.length, row.ended = n + count, first_eot[b] < count
            # Proposals past the draft's own end token or past max_new_tokens were never candidates.
            offered = min(k, draft_eot[b] + 1, max_new_tokens - n)
            row.proposed += offered
            row.accepted += min(agree[b], offered)
            all_accepted &= agree[b] >= offered
        return k, all_accepted

    def propose(self, current: list[int], active: dict[int, int], k: int) -> Tensor:
        """k greedy proposals per row (batch, k) of the draft, written tentatively after each row's last token in
        `sequence`; fewer once the schedule's early stops say so (`Heuristic`)."""
        sequence, device = self.sequence, self.sequence.device
        proposals = torch.empty(sequence.shape[0], k, dtype=torch.long, device=device)
        if k == 0:
            return proposals
        start = torch.tensor(current, device=device)[:, None]
        positions = start + torch.arange(-1 if self.feed_previous else 0, 1, device=device)
        logits = self.draft(sequence.gather(1, positions), positions.clamp(max=self.n_ctx - 1), min(max(current) + 1, self.n_ctx))[:, -1:]
        stops_early = not self.schedule.same_shape
        rows = torch.tensor(sorted(active), device=device)  # those still decoding
        ended = torch.zeros(len(rows), dtype=torch.bool, device=device)
        for j in range(k):
            scores = logits.float()
            token = choose(self.decoding.rules, scores, sequence, self.n_prompt, {b: n + j for b, n in active.items()})
            proposals[:, j] = token[:, 0]
            position = start + 1 + j
            sequence.scatter_(1, position, token)  # its history for the next proposal and for the verify pass
            if j + 1 == k:
                break
            if stops_early and self.schedule.confidence is not None:
                probability = scores[rows, -1].softmax(dim=-1).gather(1, token[rows])
                if (probability < self.schedule.confidence).all():  # the draft doubts every row: let the main model check
                    return proposals[:, : j + 1]
            if stops_early:
                ended |= token[rows, 0] == self.decoding.eot
                if ended.all():  # drafting on to k would make the last round of every decode the dearest
                    return proposals[:, : j + 1]
            logits = self.draft(token, position.clamp(max=self.n_ctx - 1), min(max(current) + 2 + j, self.n_ctx))
        return proposals


def apply_rules(rules: tuple, logits: Tensor, sequence: Tensor, prompt_length: int, lengths: dict[int, int]) -> None:
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


def choose(rules: tuple, logits: Tensor, sequence: Tensor, n_prompt: int, lengths: dict[int, int]) -> Tensor:
    """Plain greedy's choice (batch, time) at each of the (batch, time, vocab) float `logits`, whose output i
    of row b predicts token lengths[b] + i (its history is in `sequence`): the rules, in place, then argmax."""
    for i in range(logits.shape[1]):
        apply_rules(rules, logits[:, i], sequence, n_prompt, {b: n + i for b, n in lengths.items()})
    return logits.argmax(dim=-1)


def log_probs(logits: Tensor, tokens: Tensor) -> Tensor:
    return logits.log_softmax(dim=-1).gather(-1, tokens[..., None])[..., 0]


def load_assistant(
    name_or_path: str | os.PathLike, main: Whisper, cache_dir: str | os.PathLike | None = None, revision: str | None = None
) -> Assistant:
    """The draft model for `main`, on its device in its dtype: a checkpoint folder or hub id of a whole Whisper,
    or of a decoder alone (transformers' WhisperForCausalLM). An encoder equal to `main`'s, checked once
    here tensor by tensor, is not loaded: `main`'s encoder output feeds the draft decoder too.
    "int8" (SELF_DRAFT) is `main`'s own decoder with int8 weights, for a model on the CPU in float32 or bfloat16
    (an int8 model's draft is then the model's decoder as it is)."""
    device, dtype = main.decoder.embed_tokens.weight.device, main.decoder.embed_tokens.weight.dtype
    if str(name_or_path) == SELF_DRAFT:
        if device.type != "cpu" or dtype not in (torch.float32, torch.bfloat16):
            raise DistilWhisperError(
                f"the {SELF_DRAFT} self-draft runs on the CPU in float32 or bfloat16, not {device.type} {str(dtype)[6:]}"
            )
        return Assistant(int8_decoder(main.decoder), shares_cross_caches=True, shares_self_caches=True, compiles=False)
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
