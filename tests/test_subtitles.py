"""Subtitles cut at words (`--max-line-width`, `--max-line-count`, `--highlight-words`, as openai/whisper's CLI cuts
them), read back with a real subtitle parser: FFmpeg's SubRip and WebVTT demuxers, through PyAV."""

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from helpers import EOT, T0, needs_pyav, pipeline_ready
from distilwhisper import Segment, Transcription, Word, load_model
from distilwhisper.cli import main, render
from distilwhisper.subtitles import CueLayout, segment_words, subtitles
from test_longform import synthetic_speech

SEGMENTS = [Segment(0.0, 4.0, " And so my fellow Americans, ask not"), Segment(4.0, 9.0, " what your country can do."),
            Segment(13.0, 15.0, " Thank you.")]  # fmt: skip
WORDS = [Word(0.1, 0.5, " And"), Word(0.5, 0.8, " so"), Word(0.8, 1.2, " my"), Word(1.2, 1.9, " fellow"),
         Word(1.9, 3.0, " Americans,"), Word(3.1, 3.4, " ask"), Word(3.4, 3.9, " not"), Word(4.1, 4.5, " what"),
         Word(4.5, 4.9, " your"), Word(4.9, 5.6, " country"), Word(5.6, 5.9, " can"), Word(5.9, 8.7, " do."),
         Word(13.2, 13.6, " Thank"), Word(13.6, 14.5, " you.")]  # fmt: skip


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())


def parsed(text: str, output_format: str, tmp_path: Path) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue, as FFmpeg reads the file."""
    import av

    path = tmp_path / f"cues.{output_format}"
    path.write_text(text + "\n")
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        assert stream.codec_context.name == {"srt": "srt", "vtt": "webvtt"}[output_format]
        scale = float(stream.time_base)
        return [(round(packet.pts * scale, 3), round((packet.pts + packet.duration) * scale, 3), bytes(packet).decode().strip())
                for packet in container.demux(stream) if packet.size]  # fmt: skip


@needs_pyav
@pytest.mark.parametrize("output_format", ["srt", "vtt"])
def test_without_limits_a_cue_per_segment_timed_by_its_words(output_format, tmp_path):
    cues = parsed(subtitles(SEGMENTS, output_format, WORDS), output_format, tmp_path)
    assert cues == [(0.1, 3.9, "And so my fellow Americans, ask not"), (4.1, 8.7, "what your country can do."),
                    (13.2, 14.5, "Thank you.")]  # fmt: skip


@needs_pyav
@pytest.mark.parametrize("output_format", ["srt", "vtt"])
def test_a_width_alone_wraps_each_segments_lines(output_format, tmp_path):
    cues = parsed(subtitles(SEGMENTS, output_format, WORDS, CueLayout(max_line_width=16)), output_format, tmp_path)
    assert [text.split("\n") for _, _, text in cues] == [["And so my fellow", "Americans, ask", "not"],
                                                         ["what your", "country can do."], ["Thank you."]]  # fmt: skip
    assert all(len(line) <= 16 for _, _, text in cues for line in text.split("\n"))
    assert [(start, end) for start, end, _ in cues] == [(0.1, 3.9), (4.1, 8.7), (13.2, 14.5)]


@needs_pyav
@pytest.mark.parametrize("output_format", ["srt", "vtt"])
def test_width_and_count_flow_across_segments_and_break_at_long_pauses(output_format, tmp_path):
    cues = parsed(subtitles(SEGMENTS, output_format, WORDS, CueLayout(16, 2)), output_format, tmp_path)
    assert cues == [(0.1, 3.4, "And so my fellow\nAmericans, ask"), (3.4, 8.7, "not what your\ncountry can do."),
                    (13.2, 14.5, "Thank you.")]  # the 4.3 s pause before "Thank" ends a cue; "what" does not start one  # fmt: skip
    assert all(text.count("\n") < 2 for _, _, text in cues)


@needs_pyav
def test_highlighted_words_one_cue_each_and_the_gaps_plain(tmp_path):
    cues = parsed(subtitles(SEGMENTS[2:], "vtt", WORDS[12:], CueLayout(highlight_words=True)), "vtt", tmp_path)
    assert cues == [(13.2, 13.6, "<u>Thank</u> you."), (13.6, 14.5, "Thank <u>you.</u>")]
    cues = parsed(subtitles(SEGMENTS[:1], "vtt", WORDS[4:7], CueLayout(highlight_words=True)), "vtt", tmp_path)
    assert cues == [(1.9, 3.0, "<u>Americans,</u> ask not"), (3.0, 3.1, "Americans, ask not"),
                    (3.1, 3.4, "Americans, <u>ask</u> not"), (3.4, 3.9, "Americans, ask <u>not</u>")]  # fmt: skip


def test_each_segment_takes_its_words():
    assert [len(words) for words in segment_words(SEGMENTS, WORDS)] == [7, 5, 2]
    assert segment_words([], []) == []


def test_without_words_the_cues_are_the_segments():
    result = Transcription("".join(s.text for s in SEGMENTS), [], "en", -0.1, 0.0, segments=SEGMENTS)
    assert render(result, "a.wav", "srt", layout=CueLayout(10, 1)) == subtitles(SEGMENTS, "srt")
    assert subtitles(SEGMENTS, "srt").startswith("1\n00:00:00,000 --> 00:00:04,000\nAnd so my fellow Americans, ask not")


@pytest.fixture(scope="module")
def worded_checkpoint(random_checkpoint, tmp_path_factory):
    """A random checkpoint with alignment heads and timestamps free (test_words.py's), and a WAV of noise."""
    folder = Path(shutil.copytree(random_checkpoint(11, "tiny-4x4", tokenizer="base"), tmp_path_factory.mktemp("cues") / "model"))
    pipeline_ready(folder, range(EOT + 1, T0), max_initial_timestamp_index=50, alignment_heads=[[2, 0], [3, 1]])
    wav = folder.parent / "noise.wav"
    write_wav(wav, synthetic_speech(12 * 16000, seed=4))
    return folder, wav


@needs_pyav
def test_cli_word_timestamps_cut_cues_at_the_apis_words(worded_checkpoint, tmp_path, capsys):
    """One CLI run (vtt, cut at 20 characters and 2 lines) against the API's result: its words and the other formats
    as the CLI renders them (json: the words; txt: unchanged)."""
    folder, wav = worded_checkpoint
    result = load_model(folder).transcribe(str(wav), language="en", max_new_tokens=24, word_timestamps=True,
                                           no_speech_threshold=None)  # fmt: skip
    words = result.words
    args = [str(wav), "--model", str(folder), "--language", "en", "--max-new-tokens", "24", "--word-timestamps",
            "--output-format", "vtt", "--max-line-width", "20", "--max-line-count", "2"]  # fmt: skip
    assert main(args) == 0
    cues = parsed(capsys.readouterr().out.strip(), "vtt", tmp_path)
    assert " ".join(text.replace("\n", " ") for _, _, text in cues).split() == "".join(w.text for w in words).split()
    assert all(len(line) <= 20 or " " not in line for _, _, text in cues for line in text.split("\n")) and len(cues) > 1
    assert {s for s, _, _ in cues} <= {round(w.start, 3) for w in words} and {e for _, e, _ in cues} <= {round(w.end, 3) for w in words}
    assert json.loads(render(result, "x.wav", "json"))["words"] == [{"start": w.start, "end": w.end, "text": w.text} for w in words]
    assert render(result, "x.wav", "txt") == result.text.strip()


@pytest.mark.parametrize("flags, message", [(["--max-line-width", "20"], "--max-line-width cuts cues at words: it needs --word-timestamps"),
                                            (["--highlight-words"], "--highlight-words cuts cues at words"),
                                            (["--word-timestamps", "--max-line-count", "0"], "--max-line-count must be at least 1, got 0")])  # fmt: skip
def test_cue_flags_without_words_are_refused(flags, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["a.wav", *flags])
    assert exit.value.code == 2 and message in capsys.readouterr().err
