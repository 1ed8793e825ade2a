"""The command line: batches of files, one readable line per failure, atomic output files."""

import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import fields

import pytest

from helpers import AUDIO_DIR, BASE_MODEL, needs_shared
import distilwhisper
from distilwhisper import DistilWhisperError, load_model
from distilwhisper.cli import build_parser, main, render, write_atomically
from distilwhisper.transcribe import Transcriber, Transcription

SHORT = AUDIO_DIR / "short"
GOOD = [SHORT / "jfk_inaugural_11s.wav", SHORT / "pocketsphinx_goforward.wav", SHORT / "mfa_whisper.wav"]


@pytest.fixture(scope="module")
def expected_texts():
    """What the Python API says for the good files: the CLI must print exactly that."""
    if not BASE_MODEL.exists():
        pytest.skip(f"real fixtures not found at {BASE_MODEL}")
    return [r.text.strip() for r in load_model(BASE_MODEL).transcribe(GOOD)]


@needs_shared
def test_prints_one_line_per_file_in_order_named_as_grep_does(capsys, expected_texts):
    """grep's rule: with several inputs each line starts with FILE and a colon."""
    assert main([*map(str, GOOD), "--model", str(BASE_MODEL), "--batch-size", "2"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{source}:{text}" for source, text in zip(GOOD, expected_texts)] and err == ""


def canned(texts: list[str]):
    """A stand-in for Transcriber.outcomes giving `texts` in turn: what the CLI does with results, minus decoding."""
    remaining = iter(texts)

    def outcomes(self, numbered, *args, **kwargs):
        return [Transcription(next(remaining), tokens=[1], language="en", avg_logprob=0.0, no_speech_prob=0.0)
                for _ in numbered]

    return outcomes


@needs_shared
def test_one_input_prints_the_text_alone(capsys, monkeypatch):
    monkeypatch.setattr(Transcriber, "outcomes", canned([" One."]))
    assert main([str(GOOD[0]), "--model", str(BASE_MODEL)]) == 0
    assert capsys.readouterr().out == "One.\n"


@needs_shared
@pytest.mark.parametrize("inputs, switch, expected", [
    (GOOD[:2], "--no-filename", ["One.", "Two."]),
    (GOOD[:1], "--with-filename", [f"{GOOD[0]}:One."]),
])
def test_filename_switches_override_the_input_count(inputs, switch, expected, capsys, monkeypatch):
    monkeypatch.setattr(Transcriber, "outcomes", canned([" One.", " Two."]))
    assert main([*map(str, inputs), "--model", str(BASE_MODEL), switch]) == 0
    assert capsys.readouterr().out.splitlines() == expected


@needs_shared
def test_failures_are_one_line_each_and_the_rest_still_finishes(tmp_path, capsys, expected_texts):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_text("this is not audio")
    files = [GOOD[0], tmp_path / "missing.wav", corrupt, GOOD[1], GOOD[2]]
    code = main([*map(str, files), "--model", str(BASE_MODEL), "--output-dir", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 2 and "missing.wav" in lines[0] and "corrupt.wav" in lines[1]
    assert all(line.startswith("distilwhisper: error: ") for line in lines)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"{p.stem}.txt" for p in GOOD)  # and no temporary files left behind
    assert (tmp_path / "out" / f"{GOOD[1].stem}.txt").read_text() == expected_texts[1] + "\n"


@needs_shared
def test_json_output(tmp_path, capsys, expected_texts):
    assert main([str(GOOD[0]), "--model", str(BASE_MODEL), "--output-format", "json", "--output-dir", str(tmp_path)]) == 0
    record = json.loads((tmp_path / f"{GOOD[0].stem}.json").read_text())
    assert record["text"] == expected_texts[0] and record["file"] == str(GOOD[0]) and record["tokens"]


@needs_shared
def test_bad_language_stops_before_any_work(capsys):
    assert main([str(GOOD[0]), "--model", str(BASE_MODEL), "--language", "xx"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "unknown language 'xx'" in err


def test_model_folder_without_config_is_one_line_exit_2(tmp_path, capsys):
    assert main(["speech.wav", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"distilwhisper: error: {tmp_path} is not a Whisper checkpoint folder: it has no config.json"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()], ids=["disk-full", "ctrl-c"])
def test_a_failed_write_leaves_neither_target_nor_temporary_file(error, tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise error

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(type(error)):
        write_atomically(tmp_path / "out.txt", "text")
    assert list(tmp_path.iterdir()) == []


def test_module_entry_point_exits_nonzero_without_a_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "distilwhisper", "missing.wav", "--model", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr and len(run.stderr.splitlines()) == 1


@needs_shared
def test_inputs_with_the_same_name_do_not_overwrite_each_other(tmp_path, capsys, expected_texts):
    other = tmp_path / "elsewhere"
    other.mkdir()
    clash = other / GOOD[1].name
    clash.write_bytes(GOOD[0].read_bytes())  # same file name, different speech
    code = main([str(GOOD[1]), str(clash), "--model", str(BASE_MODEL), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1 and "would overwrite that of" in err
    assert (tmp_path / "out" / f"{GOOD[1].stem}.txt").read_text() == expected_texts[1] + "\n"


def running_out_of_memory(monkeypatch, fails):
    """Every model load_model makes from now on runs out of memory in its encoder on the calls `fails(call,
    batch)` picks (call 1, 2...), as a GPU does on too big a batch."""
    import torch

    from distilwhisper import cli

    calls = []

    def encoder_hook(module, args):
        calls.append(1)
        if fails(len(calls), len(args[0])):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")

    def loaded(*args, **kwargs):
        model = load_model(*args, **kwargs)
        model.model.encoder.register_forward_pre_hook(encoder_hook)
        return model

    monkeypatch.setattr(cli, "load_model", loaded)


@needs_shared
def test_a_batch_that_runs_out_of_memory_is_decoded_one_file_at_a_time(capsys, expected_texts, monkeypatch):
    running_out_of_memory(monkeypatch, lambda call, batch: batch > 1)
    assert main([*map(str, GOOD), "--model", str(BASE_MODEL), "--batch-size", "2"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{source}:{text}" for source, text in zip(GOOD, expected_texts)] and err == ""


@needs_shared
def test_an_unexpected_failure_fails_its_file_alone(capsys, expected_texts, monkeypatch):
    """Out of memory (or any other crash) on the first batch, and again on its first file alone: one line for that
    file; the batch's other file, decoded alone, and the next batch are still written."""
    running_out_of_memory(monkeypatch, lambda call, batch: call <= 2)
    code = main([*map(str, GOOD), "--model", str(BASE_MODEL), "--batch-size", "2"])
    out, err = capsys.readouterr()
    assert code == 1 and out.splitlines() == [f"{source}:{text}" for source, text in zip(GOOD[1:], expected_texts[1:])]
    assert err.splitlines() == [f"distilwhisper: error: {GOOD[0]}: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"]


@needs_shared
def test_a_file_failing_part_way_is_named_once(tmp_path, capsys, monkeypatch):
    """A long file read as it is decoded can fail late (ffmpeg exits with an error): our message names it already."""
    import wave

    long_file = tmp_path / "long.wav"
    with wave.open(str(long_file), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes(os.urandom(2 * 16000 * 31))

    def fails_part_way(self, audio, *args, **kwargs):
        raise DistilWhisperError(f"could not decode {long_file} with ffmpeg: Invalid data found when processing input")

    monkeypatch.setattr(Transcriber, "transcribe_long", fails_part_way)
    assert main([str(long_file), "--model", str(BASE_MODEL)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"distilwhisper: error: could not decode {long_file} with ffmpeg: Invalid data found when processing input"
    ]


@needs_shared
def test_memory_error_reading_one_file_fails_that_file_alone(capsys, expected_texts, monkeypatch):
    from distilwhisper import cli

    def open_audio(source, *args):
        if source == str(GOOD[0]):
            raise MemoryError()
        return real(source, *args)

    real = cli.open_audio
    monkeypatch.setattr(cli, "open_audio", open_audio)
    assert main([*map(str, GOOD), "--model", str(BASE_MODEL), "--no-filename"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == expected_texts[1:] and err.splitlines() == [f"distilwhisper: error: {GOOD[0]}: MemoryError"]


@pytest.mark.parametrize("device", ["cuda:1", "mps", "tpu"])
def test_an_unusable_device_is_one_line_exit_2(device, capsys):
    if device == "cuda:1":
        import torch

        if torch.cuda.device_count() > 1:
            pytest.skip("this machine has a second GPU")
    assert main(["speech.wav", "--model", str(BASE_MODEL), "--device", device]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("distilwhisper: error: ") and f"'{device}'" in err[0]


def test_written_files_get_an_ordinary_mode_or_keep_the_one_they_replace(tmp_path):
    previous = os.umask(0o022)
    try:
        write_atomically(tmp_path / "new.txt", "text")
        (tmp_path / "kept.txt").write_text("old")
        os.chmod(tmp_path / "kept.txt", 0o640)
        write_atomically(tmp_path / "kept.txt", "text")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "kept.txt").stat().st_mode) == 0o640
    assert (tmp_path / "kept.txt").read_text() == "text\n"


@needs_shared
def test_a_transcript_cut_by_the_token_limit_is_reported(capsys):
    assert main([str(GOOD[0]), "--model", str(BASE_MODEL), "--max-new-tokens", "3"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1
    assert err.splitlines() == [
        f"distilwhisper: warning: {GOOD[0]}: the transcript was cut at 3 tokens (--max-new-tokens) before its end"
    ]


@needs_shared
def test_device_auto_is_accepted(capsys, monkeypatch):
    """faster-whisper's default spelling: the GPU when there is one, else the CPU (load_model's default)."""
    monkeypatch.setattr(Transcriber, "outcomes", canned([" One."]))
    assert main([str(GOOD[0]), "--model", str(BASE_MODEL), "--device", "auto"]) == 0
    assert capsys.readouterr().out == "One.\n"


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"distilwhisper {distilwhisper.__version__}\n"


def option_help_blocks(help_text: str) -> dict[str, str]:
    """`--help`'s text for each option, keyed by its first spelling, wrapped lines joined."""
    blocks, current = {}, None
    for line in help_text.splitlines():
        if re.match(r"  -", line):
            current = line.split()[0].rstrip(",")
            blocks[current] = line
        elif current and line.startswith("    "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


def test_help_names_every_json_field_and_where_compile_pays():
    blocks = option_help_blocks(build_parser().format_help())
    assert all(field.name in blocks["--output-format"] for field in fields(Transcription))  # acceptance_rate too
    assert "the decoder step, and on a GPU the encoder too" in blocks["--compile"]  # the CPU's encoder stays eager
    assert "on a CPU it hardly pays" in blocks["--compile"]


def exit_status(argv: list[str]) -> int:
    """main(argv)'s status, whether it returns it or argparse exits with it (a bad option, usage first)."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.parametrize("option, message", [
    (["--chunk-length", "40"], "--chunk-length must be between 1 and 30 s (the encoder's window), got 40.0"),
    pytest.param(["--max-new-tokens", "500"], "--max-new-tokens must be between 1 and 444 (the decoder holds 448 "
                                              "positions, the prompt takes 4)", marks=needs_shared),
], ids=["checked-before-loading", "checked-against-the-model"])  # fmt: skip
def test_an_option_error_names_the_flag_not_the_python_parameter(option, message, capsys):
    """The API's messages name its parameters (max_new_tokens); the command line's, the flags people typed."""
    assert exit_status([str(GOOD[0]), "--model", str(BASE_MODEL), *option]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"distilwhisper: error: {message}"


def test_an_output_dir_that_is_a_file_says_so(tmp_path, capsys):
    taken = tmp_path / "out"
    taken.write_text("")
    assert main(["speech.wav", "--output-dir", str(taken)]) == 2  # refused before the model loads
    assert capsys.readouterr().err.splitlines() == [
        f"distilwhisper: error: cannot create output folder {taken}: it exists and is not a folder"
    ]


@needs_shared
def test_subtitles_of_several_files_printed_without_names_stay_apart(capsys):
    """A blank line after each file's last cue, as between cues: else it runs into the next file's cue number."""
    files = [SHORT / "cmu_arctic_prompts_cathy_a0110.wav", SHORT / "cmu_arctic_prompts_cathy_a0107.wav"]
    expected = load_model(BASE_MODEL).transcribe(files, return_timestamps=True)
    assert main([*map(str, files), "--model", str(BASE_MODEL), "--output-format", "srt", "--no-filename"]) == 0
    assert capsys.readouterr().out == "".join(f"{render(r, str(f), 'srt')}\n\n" for f, r in zip(files, expected))


@needs_shared
def test_an_assistant_that_is_not_there_is_named_as_the_assistant(capsys):
    assert main([str(GOOD[0]), "--model", str(BASE_MODEL), "--assistant", "/nonexistent"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "distilwhisper: error: assistant '/nonexistent' is neither a checkpoint folder nor a hub repo id (owner/name)"
    ]


def test_every_option_names_its_default_in_help():
    parser = build_parser()
    blocks = option_help_blocks(parser.format_help())
    options = [a.option_strings[0] for a in parser._actions if a.option_strings and a.dest not in ("help", "version")]
    assert options and set(options) <= blocks.keys()
    for option in options:
        assert "default: " in blocks[option] and "default: None" not in blocks[option], blocks[option]


def main_within_test(argv: list[str]) -> int:
    """main(argv); a KeyboardInterrupt escaping it fails this test instead of stopping the whole pytest run."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main()")


@needs_shared
def test_ctrl_c_keeps_finished_files_and_exits_130(tmp_path, capsys, monkeypatch):
    """Interrupted in the second batch: the first batch's files are there, whole; no temporary file; one line."""
    first_batch, calls = canned([" One.", " Two."]), []

    def interrupted_second_time(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return first_batch(self, *args, **kwargs)

    monkeypatch.setattr(Transcriber, "outcomes", interrupted_second_time)
    argv = [*map(str, GOOD), "--model", str(BASE_MODEL), "--batch-size", "2", "--output-dir", str(tmp_path)]
    code = main_within_test(argv)
    assert code == 130 and capsys.readouterr().err.splitlines() == ["distilwhisper: interrupted"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{p.stem}.txt" for p in GOOD[:2])
    assert (tmp_path / f"{GOOD[1].stem}.txt").read_text() == "Two.\n"


def test_ctrl_c_while_the_model_loads_is_one_line_exit_130(capsys, monkeypatch):
    from distilwhisper import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_model", interrupted)
    assert main_within_test(["speech.wav", "--model", str(BASE_MODEL)]) == 130
    assert capsys.readouterr().err.splitlines() == ["distilwhisper: interrupted"]


def cli_process(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "distilwhisper", *args], stderr=subprocess.PIPE, text=True, **popen)


@needs_shared
def test_a_reader_that_stops_reading_ends_the_run_quietly():
    """`distilwhisper *.wav | head -1`: once the pipe's reader has gone, stop as SIGPIPE stops other commands
    (status 141, nothing on stderr), not with a BrokenPipeError traceback."""
    process = cli_process(*map(str, GOOD[:2]), "--model", str(BASE_MODEL), stdout=subprocess.PIPE)
    process.stdout.close()  # gone before the model has loaded, so the first line meets a closed pipe
    assert process.wait(timeout=300) == 141
    assert process.stderr.read() == ""


@needs_shared
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full (not Linux)")
def test_a_full_standard_output_fails_each_file_in_one_line():
    with open("/dev/full", "w") as full:
        process = cli_process(*map(str, GOOD[:2]), "--model", str(BASE_MODEL), stdout=full)
        assert process.wait(timeout=300) == 1
    lines = process.stderr.read().splitlines()
    assert lines == [f"distilwhisper: error: {source}: cannot write to standard output: No space left on device" for source in GOOD[:2]]


@needs_shared
def test_a_file_name_that_is_not_utf8_is_printed_and_written_escaped(tmp_path, capsys, expected_texts):
    """Python keeps such a name's bytes as lone surrogates, which neither standard output nor a JSON file can
    encode: the name is written with \\xff escapes, and the file is transcribed like any other."""
    odd = os.fsdecode(bytes(tmp_path) + b"/odd\xffname.wav")
    with open(GOOD[0], "rb") as source, open(odd, "wb") as copy:
        copy.write(source.read())
    printed = odd.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    assert main([odd, str(GOOD[1]), "--model", str(BASE_MODEL)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{printed}:{expected_texts[0]}", f"{GOOD[1]}:{expected_texts[1]}"]
    assert main([odd, "--model", str(BASE_MODEL), "--output-format", "json", "--output-dir", str(tmp_path / "out")]) == 0
    written = json.loads((tmp_path / "out" / os.fsdecode(b"odd\xffname.json")).read_text())
    assert written["file"] == printed and written["text"] == expected_texts[0]
