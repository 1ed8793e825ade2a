"""Word error rate as Distil-Whisper computes it: `python -m distilwhisper.evaluate MANIFEST.tsv --model ...`
(`wer`), with Whisper's English text normaliser (`normalizer`)."""

from .normalizer import EnglishTextNormalizer, basic_normalize, load_spelling_map
from .wer import corpus_wer, main, read_manifest, summary_line

__all__ = ["EnglishTextNormalizer", "basic_normalize", "corpus_wer", "load_spelling_map", "main", "read_manifest", "summary_line"]
