"""The headless command line: detection output, answers errors, help."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import click
import pytest

from installer.cli import parse_duration


def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_detect_json_and_table() -> None:
    result = shipyard("install", "--detect", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert list(report) == [
        "system",
        "engine",
        "init",
        "accelerators",
        "storage",
        "database",
        "installation",
    ]
    assert {"name", "value", "status", "detail"} <= set(report["system"][0])
    table = shipyard("install", "--detect")
    assert table.returncode == 0
    assert "SYSTEM\n" in table.stdout and "ACCELERATORS\n" in table.stdout


def test_headless_needs_good_answers(tmp_path: Path) -> None:
    result = shipyard("install", "--headless")
    assert result.returncode == 2 and "--headless needs --answers FILE" in result.stderr
    bad = tmp_path / "answers.toml"
    bad.write_text('role = "all-in-one"\nprot = 8081\n')
    result = shipyard("install", "--headless", "--answers", str(bad))
    assert result.returncode == 2
    assert f'{bad}: unknown key "prot" (did you mean "port"?)' in result.stderr
    result = shipyard("install", "--json")
    assert result.returncode == 2 and "--json goes with --detect" in result.stderr


def test_install_executable_only(tmp_path: Path) -> None:
    """From a checkout, `--executable` writes the wrapper for this venv (the packaged program
    lays itself out instead: tests/packaging); it goes with no other option."""
    link = tmp_path / "bin" / "shipyard"
    result = shipyard("install", "--executable", str(link))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installed" in result.stdout and "-m shipyard" in link.read_text()
    version = subprocess.run([str(link), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("shipyard, version ")
    result = shipyard("install", "--executable", str(link), "--headless")
    assert result.returncode == 2 and "--executable goes alone" in result.stderr


def test_the_commands_are_mounted() -> None:
    assert "install" in shipyard("--help").stdout
    assert "uninstall" in shipyard("--help").stdout
    node = shipyard("node", "--help")
    assert "token" in node.stdout and "serve" in node.stdout
    create = shipyard("node", "token", "create", "--help")
    assert create.returncode == 0 and "--ttl" in create.stdout
    uninstall = shipyard("uninstall", "--help")
    assert "--purge" in uninstall.stdout and "--headless" in uninstall.stdout


def test_durations() -> None:
    assert parse_duration("24h") == timedelta(hours=24)
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("90") == timedelta(seconds=90)
    with pytest.raises(click.BadParameter, match="not a duration"):
        parse_duration("tomorrow")
