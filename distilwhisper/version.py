"""The one place the version lives: the package, `distilwhisper --version` and setup.py (which reads this file
as text, so building needs no torch) all take it from here."""

__version__ = "0.1.0"
