"""Makes tests/quiverd.py (the quiverd process helper) importable from every test directory."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
