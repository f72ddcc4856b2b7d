"""The in-container runner. `runner.py` and `shipyard_relay.py` are stdlib-only: they are mounted
read-only into kernels and run by the image's own python3, so they must not import anything from
this project."""

from pathlib import Path

RUNNER_PATH = Path(__file__).with_name("runner.py")
# every file the node copies into the runner folder that kernels mount
RUNNER_FILES = (RUNNER_PATH, Path(__file__).with_name("shipyard_relay.py"))
