"""The README's and the docs' Python examples run as written, on the real checkpoint and speech in ../shared
(names they leave to the reader are bound to files there)."""

import re

import pytest

from helpers import AUDIO_DIR, BASE_MODEL, JFK, ROOT, needs_shared

# What an example calls a checkpoint or a file -> what this machine has.
STAND_INS = {
    '"distil-whisper/distil-large-v2"': repr(str(BASE_MODEL)),
    '"path/to/checkpoint"': repr(str(BASE_MODEL)),
    '"speech.wav"': repr(str(JFK)),
    '"speech.mp3"': repr(str(JFK)),
    '"a.wav"': repr(str(JFK)),
    '"b.wav"': repr(str(AUDIO_DIR / "short" / "pocketsphinx_goforward.wav")),
    'device="cuda", dtype="float16"': 'device="cpu"',
}


def python_blocks(path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / path).read_text(), re.S)


def run(code: str, **names) -> dict:
    for written, here in STAND_INS.items():
        code = code.replace(written, here)
    namespace = dict(names)
    exec(compile(code, "example", "exec"), namespace)
    return namespace


@needs_shared
def test_the_readme_example_runs():
    (example,) = python_blocks("README.md")
    done = run(example)
    assert "ask not what your country can do for you" in done["result"].text and done["results"][0].segments


@needs_shared
@pytest.mark.parametrize("page", ["docs/api.md", "docs/speculative.md", "docs/words.md"])
def test_the_docs_examples_run(page):
    """Each page's examples one after the other, as a reader would paste them."""
    import numpy as np

    names = {"samples": np.zeros(16000, np.float32), "paths": [JFK]}
    for example in python_blocks(page):
        names = run(example, **names)
    assert names["results"][0].tokens
