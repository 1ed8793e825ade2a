"""The package's shape: data flows one way, so every module imports only modules below it.

Read from the source (ast), not by importing: the package's own imports, `from .x import` and `from ..x import`.
"""

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "distilwhisper"
# Bottom to top: each module may import only those before it.
LAYERS = [
    "errors", "version", "languages", "devices", "audio", "model", "alignment", "weights", "tokenizer", "longform", "sequential", "words",
    "decoding", "beam_search", "speculative", "compiled", "options", "plan", "inputs", "windows", "transcribe", "subtitles",
    "cli", "evaluate.normalizer", "evaluate.wer", "evaluate", "evaluate.__main__",
    "scale.sources", "scale.rows", "scale.job", "scale.store", "scale.replica", "scale.runner", "scale.command", "scale",
    "scale.__main__", "__main__", "__init__",
]  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def package_imports(path: Path) -> set[str]:
    """The package modules `path` imports (relative imports resolved against its own package)."""
    package = list(path.relative_to(PACKAGE).parent.parts)  # [] for distilwhisper/x.py, ["evaluate"] below it
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target:
                found.add(".".join(target))
            else:  # from . import x
                found |= {alias.name for alias in node.names}
    return {name if name in LAYERS else name.rsplit(".", 1)[0] for name in found}


def test_every_module_is_placed_and_imports_only_the_ones_below_it():
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    assert set(modules) == set(LAYERS), "place each module of the package in LAYERS"
    for name, path in modules.items():
        above = [imported for imported in package_imports(path) if LAYERS.index(imported) >= LAYERS.index(name)]
        assert not above, f"{name} imports {above}, which are not below it"


def test_longform_is_arithmetic_on_samples_and_tokens():
    """Chunk geometry and stitching, and a sequential pass's segments, import nothing above the audio constants (and
    longform's Span): no model, no decoding."""
    assert package_imports(PACKAGE / "longform.py") <= {"audio", "errors"}
    assert package_imports(PACKAGE / "sequential.py") <= {"audio", "longform"}
    for module in ("longform.py", "sequential.py"):
        assert "torch" not in {alias.name.split(".")[0] for node in ast.walk(ast.parse((PACKAGE / module).read_text()))
                               if isinstance(node, ast.Import) for alias in node.names}
