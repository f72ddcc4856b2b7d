"""The in-container runner. `runner.py` is stdlib-only: it is mounted read-only into kernels and
run by the image's own python3, so it must not import anything from this project."""

from pathlib import Path

RUNNER_PATH = Path(__file__).with_name("runner.py")
