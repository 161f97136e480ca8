"""Data tests: `network` marks tests that download from PyPI on first run (cached after)."""
from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line("markers", "network: downloads from PyPI on first run (cached after)")
