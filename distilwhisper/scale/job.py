"""What a job is, so that a resume is the same job: the model (where it is and a hash of its weights), every
decoding option, the WER threshold. job.json in the output folder records it; a resume whose command differs in any
of them is refused by name, since its rows would not be comparable with the ones already written.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..cli import write_atomically
from ..errors import DistilWhisperError
from ..options import TranscribeOptions

JOB_FILE = "job.json"
# Throughput knobs: they change how fast rows come, not what they hold, so a resume may change them.
NOT_RECORDED = ("batch_size",)


@dataclass(frozen=True)
class JobSpec:
    """What every row of a job was made with."""

    model: str  # the checkpoint folder the replicas load
    weights_sha256: str  # of its safetensors files: a folder whose weights changed is another model
    options: TranscribeOptions
    assistant: str | None = None
    dtype: str | None = None  # None: float16 on a GPU, float32 on the CPU
    compile: bool = False
    wer_threshold: float = 10.0
    columns: tuple[str, str] | None = None
    normalizer: str = "english"

    def record(self) -> dict:
        options = {k: v for k, v in asdict(self.options).items() if k not in NOT_RECORDED}
        fields = {k: v for k, v in asdict(self).items() if k != "options"}
        return fields | {"options": options, "columns": list(self.columns) if self.columns else None}


def weights_hash(model_dir: Path) -> str:
    """sha256 over the checkpoint's safetensors files, in name order (a few seconds a gigabyte, once a job)."""
    digest = hashlib.sha256()
    for path in sorted(model_dir.glob("*.safetensors")):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                digest.update(block)
    return digest.hexdigest()


def check_or_record(output: Path, spec: JobSpec) -> bool:
    """Write output/job.json for a new job; for a folder that has one, refuse in one line when `spec` differs from it
    (naming the first field that does). True when the folder held this job already (a resume)."""
    path = output / JOB_FILE
    wanted = spec.record()
    if not path.exists():
        write_atomically(path, json.dumps(wanted, indent=1, ensure_ascii=False))
        return False
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DistilWhisperError(f"cannot read {path}: {e}") from None
    for name, value in flattened(wanted).items():
        before = flattened(recorded).get(name, "(absent)")
        if before != value:
            raise DistilWhisperError(f"{output} holds a job made with {name}={json.dumps(before)}, not {json.dumps(value)}; "
                                     "resume with the same model and options, or write to a new --output")  # fmt: skip
    return True


def flattened(record: dict) -> dict:
    """{"options": {"language": "en"}} -> {"language": "en"}: fields by the name a person sets them by."""
    flat: dict = {}
    for name, value in record.items():
        flat |= flattened(value) if isinstance(value, dict) else {name: value}
    return flat
