"""Words from timed tokens, as transformers' Whisper tokenizer groups them (`_collate_word_timestamps`).

    tokens " ill" "-" "d" "isp" "osed" "."   ->   words " ill" (its token's times), "-disposed." (from the start of
                                                  "-" to the end of ".")

1. Tokens are grouped until they decode to whole characters (a character may span tokens: no U+FFFD left).
2. A group that starts with a space, or is punctuation, starts a word; any other joins the word before it.
3. Opening punctuation (" (", " \"" ...) joins the word after it; closing punctuation (".", ",", "?" ...) the word
   before it, as the pipeline merges them (openai/whisper's lists; its other adjustments, around pauses, are not
   the pipeline's: docs/deviations.md).

Every language is split on spaces, as the pipeline does (it never learns the language: generate strips the prompt).
"""

from dataclasses import dataclass

from .tokenizer import Tokenizer

PREPENDED = "\"'“¡¿([{-"
APPENDED = "\"'.。,，!！?？:：”)]}、"
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


@dataclass
class Word:
    """A word and when it was spoken, in seconds from the start of the audio."""

    start: float
    end: float
    text: str  # its leading space included, as Whisper writes it


def words_of(tokenizer: Tokenizer, tokens: list[int], times: list[tuple[float, float]]) -> list[Word]:
    """The words of text `tokens`, each timed from its first token's start to its last token's end (`times`: one
    (start, end) per token)."""
    texts, indices = merge_punctuation(*split_on_spaces(tokenizer, tokens))
    return [Word(times[ix[0]][0], times[ix[-1]][1], text) for text, ix in zip(texts, indices)]


def split_on_unicode(tokenizer: Tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """Runs of tokens that decode to whole characters: their text, and the tokens' places."""
    whole = tokenizer.decode(tokens)
    texts: list[str] = []
    indices: list[list[int]] = []
    start, offset = 0, 0
    for i in range(len(tokens)):
        text = tokenizer.decode(tokens[start : i + 1])
        cut = text.find("\ufffd")
        # A replacement character counts as whole where the full text has one there too (bytes that never decode).
        if cut < 0 or offset + cut >= len(whole) or whole[offset + cut] == "\ufffd":
            texts.append(text)
            indices.append(list(range(start, i + 1)))
            start, offset = i + 1, offset + len(text)
    return texts, indices


def split_on_spaces(tokenizer: Tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """Words: a run that starts with a space or is punctuation begins one (as the pipeline tests it, by substring:
    an empty run counts too), any other joins the one before."""
    texts: list[str] = []
    indices: list[list[int]] = []
    for text, places in zip(*split_on_unicode(tokenizer, tokens)):
        if text.startswith(" ") or text.strip() in PUNCTUATION or not texts:
            texts.append(text)
            indices.append(places)
        else:
            texts[-1] += text
            indices[-1] = indices[-1] + places
    return texts, indices


def merge_punctuation(texts: list[str], indices: list[list[int]]) -> tuple[list[str], list[list[int]]]:
    """Opening punctuation joined to the word after it (right to left), closing punctuation to the word before it
    (left to right); the words left empty dropped. Membership is by substring, as in the pipeline."""
    texts, indices = list(texts), list(indices)
    following = len(texts) - 1
    for i in range(len(texts) - 2, -1, -1):
        if texts[i].startswith(" ") and texts[i].strip() in PREPENDED:
            texts[following], indices[following] = texts[i] + texts[following], indices[i] + indices[following]
            texts[i], indices[i] = "", []
        else:
            following = i
    before = 0
    for j in range(1, len(texts)):
        if not texts[before].endswith(" ") and texts[j] in APPENDED:
            texts[before], indices[before] = texts[before] + texts[j], indices[before] + indices[j]
            texts[j], indices[j] = "", []
        else:
            before = j
    return [text for text in texts if text], [places for places in indices if places]  # each filtered alone, as there
