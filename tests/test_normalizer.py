"""Our port of Whisper's text normalisers against the oracle, transformers' EnglishTextNormalizer and
BasicTextNormalizer (what Distil-Whisper's run_eval.py scores WER with): the shared references, strings
chosen to reach every rule, and number phrases hypothesis puts together from the normaliser's own words."""

import pytest
from helpers import AUDIO_DIR, BASE_MODEL, needs_shared
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.whisper.english_normalizer import BasicTextNormalizer
from transformers.models.whisper.english_normalizer import EnglishTextNormalizer as HFEnglishTextNormalizer

from distilwhisper.errors import DistilWhisperError
from distilwhisper.evaluate import read_manifest
from distilwhisper.evaluate.normalizer import NUMBER_WORDS, EnglishTextNormalizer, basic_normalize, load_spelling_map

# Used where ../shared (and so whisper-base's normalizer.json) is absent: the rule, not the table, is tested.
SMALL_SPELLING_MAP = {"colour": "color", "organise": "organize", "theatre": "theater", "travelling": "traveling"}

TRICKY = [
    # numbers, ordinals, fractions, decimals, years
    "I paid twenty five dollars and fifty cents for two hundred and five apples.",
    "One oh one, double seven, triple zero, the nineteen sixties, the 1990s and the twenty first century.",
    "It's one and a half times bigger; two and a half million people; a half; three quarters.",
    "The first, second, third, fourth, fifth, ninth, twelfth, twentieth, hundredth and millionth.",
    "point five, three point one four, 1.5 million, 0.5 billion, one point oh two, 192.168.0.1",
    "minus five degrees, plus two, negative ten, positive 7, minus the rest",
    "ones, twos, sixes, twenties, thousands, a thousand and one nights, one",
    # currencies and percentages
    "$20 million, £5, €3.50, 50¢, $2 and ¢7, $0.07, twenty pounds, a euro, five euros, 30 per cent, 12 percent, 7%",
    "It costs $1,000,000.00 or 1,234 dollars, 3,5 or 10.5%.",
    # contractions and titles
    "I won't, can't, let's go, ain't, y'all wanna gotta gonna, i'ma, imma, woulda coulda shoulda, ma'am.",
    "He'd been, she's been, they'd gone, it's gone, we'd done, he's got, don't, you're, it's, I'd, we'll, I've, I'm.",
    "Mr. Smith, Mrs. Jones, St. Louis, Dr. Who, Prof. X, Capt. Hook, Gov. Gen. Sen. Rep. Pres. Rev. Hon. Asst. "
    "Assoc. Lt. Col. Jr. Sr. Esq.",
    "it 's a dog ' s life",
    # British spellings, brackets, fillers, symbols and diacritics
    "The colour of the theatre; we organise travelling.",
    "Hmm, um, uh... [laughter] (inaudible) <noise> mm mhm mmm okay",
    "Café naïve façade Œuvre Ærø straße Łódź þorn — “quotes” ‘single’ « guillemets » & @ # * ~ ^",
    "2nd 3rd 4th 21st 100s 5 th 1960 s",
    "  leading   and trailing spaces\tand\nnewlines  ",
    "",
]


@pytest.fixture(scope="module")
def spelling_map():
    return load_spelling_map(BASE_MODEL) if (BASE_MODEL / "normalizer.json").exists() else SMALL_SPELLING_MAP


@pytest.mark.parametrize("text", TRICKY)
def test_english_normaliser_equals_transformers_on_tricky_strings(spelling_map, text):
    assert EnglishTextNormalizer(spelling_map)(text) == HFEnglishTextNormalizer(spelling_map)(text)


@needs_shared
def test_english_normaliser_equals_transformers_on_every_reference(spelling_map):
    ours, oracle = EnglishTextNormalizer(spelling_map), HFEnglishTextNormalizer(spelling_map)
    for row in read_manifest(AUDIO_DIR / "manifest.tsv"):
        assert ours(row.reference) == oracle(row.reference), row.file


NUMBER_PHRASE = st.lists(
    st.sampled_from(sorted(NUMBER_WORDS) + ["a", "half", "cats", "1", "0", "20", "1.5", "$3", "£7", "7th", "1960s", "x"]),
    min_size=1, max_size=10,
).map(" ".join)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(text=NUMBER_PHRASE)
def test_number_normalisation_equals_transformers_on_generated_phrases(text):
    """Every number rule, in combinations no hand-written list reaches (the rules' quirks included)."""
    try:
        expected = HFEnglishTextNormalizer(SMALL_SPELLING_MAP)(text)
    except ValueError:  # the oracle refuses a few combinations; ours must refuse them too
        with pytest.raises(ValueError):
            EnglishTextNormalizer(SMALL_SPELLING_MAP)(text)
        return
    assert EnglishTextNormalizer(SMALL_SPELLING_MAP)(text) == expected


@pytest.mark.parametrize("text", TRICKY)
def test_basic_normaliser_equals_transformers(text):
    assert basic_normalize(text) == BasicTextNormalizer()(text)


def test_a_checkpoint_without_normalizer_json_is_a_clear_error(tmp_path):
    with pytest.raises(DistilWhisperError, match=r"has no normalizer\.json"):
        load_spelling_map(tmp_path)
    (tmp_path / "normalizer.json").write_text("{not json")
    with pytest.raises(DistilWhisperError, match="is not valid JSON"):
        load_spelling_map(tmp_path)
