"""A batch run's commands: the client's, else the image's label defaults (controlplane/batch.py).
The shell snippets are run by a real /bin/sh here, as the runner in a kernel does."""

from __future__ import annotations

import subprocess
from pathlib import Path

from controlplane.batch import commands

PYTHON_LABELS = {"ai.shipyard.batch.exec": "echo ran main", "ai.shipyard.batch.exec.if": "main.py"}


def _sh(command: str | None, cwd: Path) -> tuple[int, str, str]:
    assert command is not None
    done = subprocess.run(["/bin/sh", "-c", command], cwd=cwd, capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def test_the_clients_commands_win(tmp_path: Path) -> None:
    given = {"clean": None, "build": "make", "exec": "python x.py"}
    assert commands(given, PYTHON_LABELS, "img") == given


def test_the_exec_default_applies_when_its_file_exists(tmp_path: Path) -> None:
    picked = commands({"exec": None}, PYTHON_LABELS, "img")
    (tmp_path / "main.py").write_text("")
    assert _sh(picked["exec"], tmp_path) == (0, "ran main\n", "")


def test_no_exec_and_no_file_fails_with_127_and_says_why(tmp_path: Path) -> None:
    picked = commands({"exec": None}, PYTHON_LABELS, "img")
    code, out, err = _sh(picked["exec"], tmp_path)
    assert (code, out) == (127, "")
    assert err == (
        "shipyard: nothing to run: no exec command was given and there is no main.py"
        " (the image img runs `echo ran main` when there is)\n"
    )


def test_an_image_without_a_default_fails_every_exec_left_to_it(tmp_path: Path) -> None:
    picked = commands({"clean": None, "build": None, "exec": None}, {}, "bare:1")
    assert picked["clean"] is None and picked["build"] is None
    code, _, err = _sh(picked["exec"], tmp_path)
    assert code == 127
    assert "the image bare:1 has none by default (give one, e.g. --exec 'python main.py')" in err


def test_a_build_default_is_skipped_without_its_file(tmp_path: Path) -> None:
    labels = {"ai.shipyard.batch.build": "echo built", "ai.shipyard.batch.build.if": "req.txt"}
    build = commands({"build": None, "exec": "true"}, labels, "img")["build"]
    assert _sh(build, tmp_path) == (0, "", "")
    (tmp_path / "req.txt").write_text("")
    assert _sh(build, tmp_path) == (0, "built\n", "")
