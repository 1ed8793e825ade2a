"""What a job transcribes: INPUT, a TSV manifest (as `evaluate` reads it) or parquet files in the layout Hugging Face
datasets write, as a list of small Items. Only names and references are read here, never audio: the replicas read
each file's audio (a path, or a row of a parquet file) when its batch comes, so the driver's memory follows the
number of rows, not the hours of audio.
"""

import glob
from dataclasses import dataclass
from pathlib import Path

from ..errors import DistilWhisperError
from ..evaluate.wer import manifest_rows

SCALE_EXTRA = 'pip install "distilwhisper[scale]"'  # Ray Data, pyarrow, jiwer
MANIFEST_COLUMNS = ("file", "reference_text")
PARQUET_TEXT_COLUMNS = ("text", "sentence", "transcription", "reference_text")  # what datasets' ASR sets call it


@dataclass(frozen=True)
class Item:
    """One input: its id (what the output joins on), how it is named, what was said ("" when not known), and where
    its audio is: a path, or row `row` of the parquet file `path`'s column `column`."""

    id: str
    file: str
    reference: str
    path: str
    row: int = -1  # -1: `path` is the audio file itself
    column: str = ""


def read_items(source: str, columns: tuple[str, str] | None = None, limit: int | None = None) -> list[Item]:
    """INPUT's items in order. A folder or glob of *.parquet is a dataset; anything else a manifest. `columns`:
    (audio, text); by default file and reference_text (a manifest), audio and the first of text, sentence,
    transcription, reference_text found (parquet); without a text column every reference is empty. Ids are the
    manifest's file column or the parquet's id column (else file:row); a repeated id is refused, since the output
    is one row per id."""
    parquet = parquet_files(source)
    items = read_parquet_items(parquet, columns, limit) if parquet else read_manifest_items(source, columns, limit)
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise DistilWhisperError(f"{source}: id {item.id!r} appears twice; each input needs its own id")
        seen.add(item.id)
    return items


def parquet_files(source: str) -> list[Path]:
    """The parquet files `source` names (a folder of them, searched recursively, a glob or one file), sorted so that
    the default ids are the same on every run; [] when it names none."""
    path = Path(source)
    if path.is_dir():
        return sorted(path.rglob("*.parquet"))
    if path.suffix == ".parquet" or glob.has_magic(source):
        found = sorted(Path(p) for p in glob.glob(source, recursive=True) if p.endswith(".parquet"))
        if not found:
            raise DistilWhisperError(f"no parquet file matches {source}")
        return found
    return []


def read_manifest_items(manifest: str, columns: tuple[str, str] | None, limit: int | None) -> list[Item]:
    file_column, text_column = columns or MANIFEST_COLUMNS
    # Without a reference column: transcripts only, no WER (unless --columns named one: then it must be there).
    optional = columns is None and not has_column(manifest, text_column)
    rows = manifest_rows(manifest, file_column, None if optional else text_column, limit)
    return [Item(row.file, row.file, row.reference, str(row.path)) for row in rows]


def has_column(manifest: str, column: str) -> bool:
    try:
        with open(manifest, encoding="utf-8") as f:
            return column in f.readline().rstrip("\r\n").split("\t")
    except (OSError, UnicodeDecodeError):
        return True  # manifest_rows says what is wrong with it


def read_parquet_items(files: list[Path], columns: tuple[str, str] | None, limit: int | None) -> list[Item]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    items: list[Item] = []
    for path in files:
        try:
            schema = pq.read_schema(path)
        except Exception as e:  # noqa: BLE001 - pyarrow's errors are many kinds; each is one line here
            raise DistilWhisperError(f"{path} is not a readable parquet file: {e}") from None
        names = schema.names
        audio_column, text_column = columns or ("audio", next((c for c in PARQUET_TEXT_COLUMNS if c in names), None))
        wanted = [c for c in (audio_column, text_column) if c is not None]
        if missing := [c for c in wanted if c not in names]:
            raise DistilWhisperError(f"{path} has no column {' or '.join(missing)} (its columns: {', '.join(names)}); "
                                     "--columns AUDIO TEXT names others")  # fmt: skip
        audio_type = schema.field(audio_column).type
        named = audio_type.num_fields > 0 and audio_type.get_field_index("path") >= 0  # datasets' {"bytes", "path"}
        read = ["id"] * ("id" in names) + [f"{audio_column}.path"] * named + [text_column] * (text_column is not None)
        table = pq.read_table(path, columns=read)
        ids = table.column("id").to_pylist() if "id" in names else None
        paths = table.column("path").to_pylist() if "path" in table.column_names else [None] * table.num_rows
        texts = table.column(text_column).to_pylist() if text_column else [""] * table.num_rows
        for row in range(table.num_rows):
            if limit is not None and len(items) == limit:
                return items
            locator = f"{path}:{row}"
            items.append(Item(str(ids[row]) if ids else locator, paths[row] or locator, texts[row] or "", str(path), row, audio_column))
    return items
