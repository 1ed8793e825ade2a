"""What a built package declares: the version the code reports, and the MIT licence shipped beside it."""

import subprocess
import sys
from pathlib import Path

import distilwhisper

ROOT = Path(__file__).resolve().parents[1]


def test_setup_py_declares_the_package_version_and_the_licence_file(tmp_path):
    """Oracle: setuptools' own metadata (PKG-INFO), built without importing the package."""
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    metadata = (tmp_path / "distilwhisper.egg-info" / "PKG-INFO").read_text().splitlines()
    assert f"Version: {distilwhisper.__version__}" in metadata
    assert "License: MIT" in metadata and "License-File: LICENSE" in metadata
    licence = (ROOT / "LICENSE").read_text().splitlines()
    assert licence[0] == "MIT License" and "Copyright (c) 2026 the distilwhisper authors" in licence
