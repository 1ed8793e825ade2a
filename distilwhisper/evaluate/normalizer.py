"""Whisper's English text normaliser, as transformers' `EnglishTextNormalizer` applies it before scoring WER.

Distil-Whisper's evaluation (training/run_eval.py) normalises references and hypotheses with
transformers' `EnglishTextNormalizer(tokenizer.english_spelling_normalizer)`: lower case, bracketed text,
fillers and most punctuation gone, contractions and titles spelled out, spelled-out numbers written in
digits ("twenty five dollars" -> "$25"), British spellings made American with the checkpoint's
`normalizer.json`. WER computed on any other normalisation is a different number, so this module follows
that one rule for rule, quirks included ("nineth", "1" written back as "one").

Why our own: transformers is never imported by the package, and the ports on PyPI are not this rule set.
openai-whisper's own normaliser (and `whisper-normalization`, an extract of it) also attaches currency
symbols to the next number and reads "half a million"; `whisper-normalizer` adds "kinda", "dunno" and
"cause" -> "because". Each gives another WER than Distil-Whisper's. tests/test_normalizer.py holds this
module equal to transformers on the shared references, tricky strings and generated number phrases.
"""

import json
import re
import unicodedata
from collections.abc import Generator, Iterator
from fractions import Fraction
from pathlib import Path

from ..errors import DistilWhisperError

# Letters that NFKD does not split into a base letter and a combining mark.
EXTRA_DIACRITICS = {
    "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "ẞ": "SS",
    "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "th", "ł": "l", "Ł": "L",
}  # fmt: skip

FILLERS = r"\b(hmm|mm|mhm|mmm|uh|um)\b"
# Applied in this order: the specific contractions before the general "n't", "'s"... endings.
REPLACEMENTS = [
    (r"\bwon't\b", "will not"), (r"\bcan't\b", "can not"), (r"\blet's\b", "let us"), (r"\bain't\b", "aint"),
    (r"\by'all\b", "you all"), (r"\bwanna\b", "want to"), (r"\bgotta\b", "got to"), (r"\bgonna\b", "going to"),
    (r"\bi'ma\b", "i am going to"), (r"\bimma\b", "i am going to"), (r"\bwoulda\b", "would have"),
    (r"\bcoulda\b", "could have"), (r"\bshoulda\b", "should have"), (r"\bma'am\b", "madam"),
    # titles and prefixes
    (r"\bmr\b", "mister "), (r"\bmrs\b", "missus "), (r"\bst\b", "saint "), (r"\bdr\b", "doctor "),
    (r"\bprof\b", "professor "), (r"\bcapt\b", "captain "), (r"\bgov\b", "governor "), (r"\bald\b", "alderman "),
    (r"\bgen\b", "general "), (r"\bsen\b", "senator "), (r"\brep\b", "representative "),
    (r"\bpres\b", "president "), (r"\brev\b", "reverend "), (r"\bhon\b", "honorable "),
    (r"\basst\b", "assistant "), (r"\bassoc\b", "associate "), (r"\blt\b", "lieutenant "),
    (r"\bcol\b", "colonel "), (r"\bjr\b", "junior "), (r"\bsr\b", "senior "), (r"\besq\b", "esquire "),
    # perfect tenses ("'s done" is ambiguous, so left to the general rules)
    (r"'d been\b", " had been"), (r"'s been\b", " has been"), (r"'d gone\b", " had gone"),
    (r"'s gone\b", " has gone"), (r"'d done\b", " had done"), (r"'s got\b", " has got"),
    # general contractions
    (r"n't\b", " not"), (r"'re\b", " are"), (r"'s\b", " is"), (r"'d\b", " would"), (r"'ll\b", " will"),
    (r"'t\b", " not"), (r"'ve\b", " have"), (r"'m\b", " am"),
]  # fmt: skip

# --- the words of spelled-out numbers ---------------------------------------------------------------------
ZEROS = {"o", "oh", "zero"}
ONES = {name: i for i, name in enumerate(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split(), start=1)}  # fmt: skip
ONES_SUFFIXED = {
    **{("sixes" if name == "six" else name + "s"): (n, "s") for name, n in ONES.items()},
    "zeroth": (0, "th"), "first": (1, "st"), "second": (2, "nd"), "third": (3, "rd"), "fifth": (5, "th"),
    "twelfth": (12, "th"),
    # the regular ordinals, "nineth" included: the rule, not the dictionary, decides
    **{name + ("h" if name.endswith("t") else "th"): (n, "th") for name, n in ONES.items() if n > 3 and n not in (5, 12)},
}  # fmt: skip
TENS = {name: 10 * i for i, name in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
TENS_SUFFIXED = {name.replace("y", "ies"): (n, "s") for name, n in TENS.items()} | {
    name.replace("y", "ieth"): (n, "th") for name, n in TENS.items()
}
MULTIPLIERS = {name: 10**power for name, power in [
    ("hundred", 2), ("thousand", 3), ("million", 6), ("billion", 9), ("trillion", 12), ("quadrillion", 15),
    ("quintillion", 18), ("sextillion", 21), ("septillion", 24), ("octillion", 27), ("nonillion", 30),
    ("decillion", 33)]}  # fmt: skip
MULTIPLIERS_SUFFIXED = {name + "s": (n, "s") for name, n in MULTIPLIERS.items()} | {
    name + "th": (n, "th") for name, n in MULTIPLIERS.items()
}
DECIMALS = {*ONES, *TENS, *ZEROS}  # words that may follow "point"
SIGNS = {"minus": "-", "negative": "-", "plus": "+", "positive": "+"}  # written before the number they precede
CURRENCIES = {"pound": "£", "pounds": "£", "euro": "€", "euros": "€", "dollar": "$", "dollars": "$", "cent": "¢", "cents": "¢"}
PREFIX_SYMBOLS = set(SIGNS.values()) | set(CURRENCIES.values())
PERCENT: dict[str, str | dict[str, str]] = {"per": {"cent": "%"}, "percent": "%"}
SPECIALS = {"and", "double", "triple", "point"}
NUMBER_WORDS = {*ZEROS, *ONES, *ONES_SUFFIXED, *TENS, *TENS_SUFFIXED, *MULTIPLIERS, *MULTIPLIERS_SUFFIXED,
                *SIGNS, *CURRENCIES, *PERCENT, *SPECIALS}  # fmt: skip
ARABIC = re.compile(r"^\d+(\.\d+)?$")


def load_spelling_map(model_dir: str | Path) -> dict[str, str]:
    """The checkpoint's British -> American spelling map (normalizer.json), as transformers' tokenizer loads it."""
    path = Path(model_dir) / "normalizer.json"
    if not path.is_file():
        raise DistilWhisperError(f"{model_dir} has no normalizer.json (Whisper's English spelling map), which WER needs")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DistilWhisperError(f"{path} is not valid JSON: {e}") from None


class EnglishTextNormalizer:
    """`normalize = EnglishTextNormalizer(load_spelling_map(folder)); normalize("Mr. Smith's £5")` -> "mister smith is £5"."""

    def __init__(self, spelling: dict[str, str]):
        self.spelling = spelling

    def __call__(self, text: str) -> str:
        s = re.sub(FILLERS, "", drop_bracketed(text.lower()))
        s = re.sub(r"\s+'", "'", s)  # "it 's" -> "it's", so the contraction rules see it
        for pattern, replacement in REPLACEMENTS:
            s = re.sub(pattern, replacement, s)
        s = re.sub(r"(\d),(\d)", r"\1\2", s)  # 1,000 -> 1000
        s = re.sub(r"\.([^0-9]|$)", r" \1", s)  # full stops go; decimal points stay
        s = remove_symbols_and_diacritics(s, keep=".%$¢€£")  # the symbols numbers still need
        s = normalize_numbers(s)
        s = " ".join(self.spelling.get(word, word) for word in s.split())
        s = re.sub(r"[.$¢€£]([^0-9])", r" \1", s)  # symbols left without a number
        s = re.sub(r"([^0-9])%", r"\1 ", s)
        return re.sub(r"\s+", " ", s)


def drop_bracketed(s: str) -> str:
    """<tags>, [notes] and (asides) are not speech."""
    return re.sub(r"\(([^)]+?)\)", "", re.sub(r"[<\[][^>\]]*[>\]]", "", s))


def basic_normalize(text: str) -> str:
    """transformers' `BasicTextNormalizer()`, what Distil-Whisper scores languages other than English with:
    lower case, bracketed text gone, marks, symbols and punctuation as spaces (accents kept)."""
    s = unicodedata.normalize("NFKC", drop_bracketed(text.lower()))
    s = "".join(" " if unicodedata.category(c)[0] in "MSP" else c for c in s)
    return re.sub(r"\s+", " ", s.lower())


def remove_symbols_and_diacritics(s: str, keep: str = "") -> str:
    """Marks, symbols and punctuation (Unicode categories M, S, P) become spaces, accents are dropped: "café!" -> "cafe "."""

    def replace(char: str) -> str:
        if char in keep:
            return char
        if char in EXTRA_DIACRITICS:
            return EXTRA_DIACRITICS[char]
        category = unicodedata.category(char)
        if category == "Mn":  # a combining accent that NFKD split off its letter
            return ""
        return " " if category[0] in "MSP" else char

    return "".join(replace(c) for c in unicodedata.normalize("NFKD", s))


# --- numbers ---------------------------------------------------------------------------------------------


def normalize_numbers(s: str) -> str:
    """Spelled-out numbers in digits, with their currency, sign, percent and ordinal or plural suffix:
    "two hundred and five dollars" -> "$205", "the nineteen sixties" -> "the 1960s", "one oh one" -> "101"."""
    s = join_halves(s)
    s = re.sub(r"([a-z])([0-9])", r"\1 \2", s)  # a number glued to a word is its own word...
    s = re.sub(r"([0-9])([a-z])", r"\1 \2", s)
    s = re.sub(r"([0-9])\s+(st|nd|rd|th|s)\b", r"\1\2", s)  # ...unless the word is its suffix: 21st, 1960s
    s = " ".join(word for word in NumberReader().read(s.split()) if word is not None)
    s = re.sub(r"([€£$])([0-9]+) (?:and )?¢([0-9]{1,2})\b", join_cents, s)  # "$2 and ¢7" -> "$2.07"
    s = re.sub(r"[€£$]0.([0-9]{1,2})\b", only_cents, s)  # "$0.07" -> "¢7"
    return re.sub(r"\b1(s?)\b", r"one\1", s)  # "one(s)" reads better than "1(s)"


def join_halves(s: str) -> str:
    """"<number> and a half" -> "<number> point five"; other "and a half"s stay, and so does the text around them."""
    pieces = re.split(r"\band\s+a\s+half\b", s)
    out = []
    for i, piece in enumerate(pieces):
        if not piece.strip():
            continue  # an empty piece and the "and a half" after it are dropped
        out.append(piece)
        if i < len(pieces) - 1:
            last_word = piece.rsplit(maxsplit=2)[-1]
            out.append("point five" if last_word in DECIMALS or last_word in MULTIPLIERS else "and a half")
    return " ".join(out)


def join_cents(m: re.Match) -> str:
    try:
        return f"{m.group(1)}{m.group(2)}.{int(m.group(3)):02d}"
    except ValueError:  # digits that int() refuses
        return m.string


def only_cents(m: re.Match) -> str:
    try:
        return f"¢{int(m.group(1))}"
    except ValueError:
        return m.string


def as_fraction(value: str | int) -> Fraction | None:
    try:
        return Fraction(value)
    except ValueError:
        return None


class NumberReader:
    """Reads words left to right, building the number in progress in `value`.

    `value` is an int while the words still add up arithmetically ("two hundred" -> 200, then "five" -> 205),
    and a string once they are read digit by digit ("one oh one" -> "101", "point five" -> ".5"). `prefix`
    is the sign or currency symbol to write before it. A word that cannot continue the number flushes it.
    """

    def __init__(self) -> None:
        self.value: str | int | None = None
        self.prefix: str | None = None

    def flush(self, text: str | int) -> str:
        """`text` with the pending prefix, which is cleared along with the number in progress."""
        text = str(text) if self.prefix is None else self.prefix + str(text)
        self.value = self.prefix = None
        return text

    def read(self, words: list[str]) -> Iterator[str]:
        skip_next = False
        for i, word in enumerate(words):
            if skip_next:
                skip_next = False
                continue
            prev = words[i - 1] if i > 0 else None
            following = words[i + 1] if i + 1 < len(words) else None
            following_is_arabic = following is not None and ARABIC.match(following) is not None
            unsigned = word[1:] if word[0] in PREFIX_SYMBOLS else word
            if ARABIC.match(unsigned):
                yield from self.arabic(word, unsigned)
            elif word not in NUMBER_WORDS:
                if self.value is not None:
                    yield self.flush(self.value)
                yield self.flush(word)
            elif word in ZEROS:
                self.value = str(self.value or "") + "0"
            elif word in ONES:
                self.value = self.add_ones(ONES[word], prev)
            elif word in ONES_SUFFIXED:
                ones, suffix = ONES_SUFFIXED[word]
                yield self.flush(str(self.add_ones(ones, prev)) + suffix)
            elif word in TENS:
                self.value = self.add_tens(TENS[word])
            elif word in TENS_SUFFIXED:
                tens, suffix = TENS_SUFFIXED[word]
                yield self.flush(str(self.add_tens(tens)) + suffix)
            elif word in MULTIPLIERS:
                yield from self.multiply(MULTIPLIERS[word])
            elif word in MULTIPLIERS_SUFFIXED:
                yield from self.multiply_suffixed(*MULTIPLIERS_SUFFIXED[word])
            elif word in SIGNS:
                if self.value is not None:
                    yield self.flush(self.value)
                if following in NUMBER_WORDS or following_is_arabic:
                    self.prefix = SIGNS[word]
                else:
                    yield self.flush(word)
            elif word in CURRENCIES:
                if self.value is not None:  # "five dollars" -> "$5"
                    self.prefix = CURRENCIES[word]
                    yield self.flush(self.value)
                else:
                    yield self.flush(word)
            elif word in PERCENT:
                skip_next = yield from self.percent(PERCENT[word], word, following)
            else:  # and, double, triple, point
                skip_next = yield from self.special(word, prev, following, following_is_arabic)
        if self.value is not None:
            yield self.flush(self.value)

    def arabic(self, word: str, unsigned: str) -> Iterator[str]:
        """Digits, maybe with a decimal point and a sign or currency symbol before them."""
        fraction = as_fraction(unsigned)
        if fraction is None:
            raise ValueError(f"cannot read {unsigned!r} as a number")  # unreachable: ARABIC matched it
        if self.value is not None:
            if isinstance(self.value, str) and self.value.endswith("."):
                self.value += word  # "point" then digits: decimals, or an IP address's parts
                return
            yield self.flush(self.value)
        if word != unsigned:
            self.prefix = word[0]
        self.value = fraction.numerator if fraction.denominator == 1 else unsigned

    def add_ones(self, ones: int, prev: str | None) -> str | int:
        """The number in progress with "one".."nineteen" read after it."""
        value = self.value
        if value is None:
            return ones
        if isinstance(value, str) or prev in ONES:  # read digit by digit
            if prev in TENS and ones < 10:
                return str(value)[:-1] + str(ones)  # "...twenty" ends in a 0 that the digit takes
            return str(value) + str(ones)
        if value % (10 if ones < 10 else 100) == 0:  # "twenty" + "five", "two hundred" + "twelve"
            return value + ones
        return str(value) + str(ones)  # "twenty five" + "six": digits side by side

    def add_tens(self, tens: int) -> str | int:
        value = self.value
        if value is None:
            return tens
        if isinstance(value, int) and value % 100 == 0:
            return value + tens
        return str(value) + str(tens)

    def multiply(self, multiplier: int) -> Iterator[str]:
        value = self.value
        if value is None:
            self.value = multiplier
        elif isinstance(value, str) or value == 0:  # "1.5 million" -> 1500000, if that is whole
            product = scaled(value, multiplier)
            if product is None:
                yield self.flush(value)
                self.value = multiplier
            else:
                self.value = product
        else:  # "two thousand three hundred": only the part below a thousand is multiplied
            self.value = value // 1000 * 1000 + value % 1000 * multiplier

    def multiply_suffixed(self, multiplier: int, suffix: str) -> Iterator[str]:
        value = self.value
        if value is None:
            yield self.flush(str(multiplier) + suffix)
        elif isinstance(value, str):
            product = scaled(value, multiplier)
            if product is None:
                yield self.flush(value)
                yield self.flush(str(multiplier) + suffix)
            else:
                yield self.flush(str(product) + suffix)
        else:
            yield self.flush(str(value // 1000 * 1000 + value % 1000 * multiplier) + suffix)
        self.value = None

    def percent(self, rule: str | dict[str, str], word: str, following: str | None) -> Generator[str, None, bool]:
        """"percent", or "per" + "cent", after a number; returns whether the next word was used up."""
        if self.value is None:
            yield self.flush(word)
        elif isinstance(rule, str):
            yield self.flush(str(self.value) + rule)
        elif following in rule:
            yield self.flush(str(self.value) + rule[following])
            return True
        else:
            yield self.flush(self.value)
            yield self.flush(word)
        return False

    def special(self, word: str, prev: str | None, following: str | None, following_is_arabic: bool) -> Generator[str, None, bool]:
        """"and", "double", "triple" and "point" between numbers; returns whether the next word was used up."""
        if following not in NUMBER_WORDS and not following_is_arabic:
            if self.value is not None:
                yield self.flush(self.value)
            yield self.flush(word)
        elif word == "and":
            if prev not in MULTIPLIERS:  # "hundred and five" is one number; other "and"s stay
                if self.value is not None:
                    yield self.flush(self.value)
                yield self.flush(word)
        elif word in ("double", "triple"):
            if following in ONES or following in ZEROS:  # "double five" -> "55"
                self.value = str(self.value or "") + str(ONES.get(following, 0)) * (2 if word == "double" else 3)
                return True
            if self.value is not None:
                yield self.flush(self.value)
            yield self.flush(word)
        elif following in DECIMALS or following_is_arabic:  # "point"
            self.value = str(self.value or "") + "."
        return False


def scaled(value: str | int, multiplier: int) -> int | None:
    """value * multiplier when that is a whole number ("1.5" * 1000), else None."""
    fraction = as_fraction(value)
    if fraction is None or (fraction * multiplier).denominator != 1:
        return None
    return (fraction * multiplier).numerator
