"""Imported first by every bench script: puts the repository root, not bench/, at the front of
sys.path, since bench/bandit.py, bench/simulator.py and bench/compression.py would otherwise
shadow the packages of the same names when a script is run as `python bench/<name>.py`."""
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]
