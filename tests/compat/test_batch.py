"""Batch mode with the shipped image's metadata: `python` exists, a run without an exec command
runs main.py (the image's label ai.shipyard.batch.exec), and a run with nothing to run fails
clearly; the official client and `shipyard run` alike (issue 9 item 1)."""

from __future__ import annotations

import pytest

from tests.compat.conftest import BackendAI

pytestmark = pytest.mark.docker
SMALL = ["-r", "cpu=0.25", "-r", "mem=128m"]
NOTHING = "shipyard: nothing to run: no exec command was given and there is no main.py"


def test_backendai_run_without_exec_runs_main_py(bai: BackendAI) -> None:
    (bai.workdir / "main.py").write_text("import helper\nprint('main ran', helper.X)\n")
    (bai.workdir / "helper.py").write_text("X = 7\n")
    result = bai("run", "--rm", *SMALL, "python", "main.py", "helper.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "main ran 7\n"
    assert "Execution finished. (exit code = 0)" in result.stderr


def test_backendai_run_exec_python_finds_python(bai: BackendAI) -> None:
    (bai.workdir / "x.py").write_text("import sys\nprint('x ran on', sys.version_info[0])\n")
    result = bai("run", "--rm", *SMALL, "--exec", "python x.py", "python", "x.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "x ran on 3\n"
    assert "not found" not in result.stderr
    assert "Execution finished. (exit code = 0)" in result.stderr


def test_backendai_run_with_nothing_to_run_fails_clearly(bai: BackendAI) -> None:
    (bai.workdir / "other.py").write_text("print('never')\n")
    result = bai("run", "--rm", *SMALL, "python", "other.py")
    assert result.returncode == 0, result.stderr  # the client does not pass the code on
    assert result.stdout == ""
    assert NOTHING in result.stderr
    assert "Execution finished. (exit code = 127)" in result.stderr
    assert "(exit code = 0)" not in result.stderr


def test_shipyard_run_batch_the_same_way(bai: BackendAI) -> None:
    cwd = str(bai.workdir)
    cli = bai.appliance.cli
    (bai.workdir / "main.py").write_text("print('main here')\n")
    (bai.workdir / "x.py").write_text("import sys\nprint('x here')\nsys.exit(3)\n")

    default = cli("run", *SMALL, "main.py", cwd=cwd)
    assert (default.returncode, default.stdout) == (0, "main here\n"), default.stderr

    explicit = cli("run", *SMALL, "--exec", "python x.py", "x.py", cwd=cwd)
    assert (explicit.returncode, explicit.stdout) == (3, "x here\n"), explicit.stderr

    nothing = cli("run", *SMALL, "x.py", cwd=cwd)
    assert nothing.returncode == 127
    assert nothing.stdout == ""
    assert NOTHING in nothing.stderr
