"""The one config loader (hostlib): every TOML file Shipyard reads says which file, which key
and what was expected, for each kind of mistake; the commands that read them print that as one
line and exit non-zero."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.config import ControlPlaneConfig
from hostlib import ConfigError
from installer.errors import PlanError
from installer.plan import Plan
from node.config import NodeConfig

GOOD = {
    "controlplane.toml": 'state_dir = "/var/lib/shipyard"\nnode_token = "t"\n',
    "node.toml": 'state_dir = "/var/lib/shipyard/node"\ncontrolplane_url = "http://cp"\n'
    'node_token = "t"\n',
    "answers.toml": 'role = "all-in-one"\n',
}
MISSING = {
    "controlplane.toml": "node_token",
    "node.toml": "controlplane_url",
    "answers.toml": "role",
}
WRONG_TYPE = {
    "controlplane.toml": ('port = "8081"', 'key "port": expected a whole number, got "8081"'),
    "node.toml": ('cpu = "two"', 'key "cpu": expected a number, got "two"'),
    "answers.toml": ("install_engine = 1", 'key "install_engine": expected true or false, got 1'),
}


def load(name: str, path: Path) -> object:
    """What Shipyard does with a file of this kind."""
    if name == "controlplane.toml":
        return ControlPlaneConfig.load(path)
    if name == "node.toml":
        return NodeConfig.load(path)
    try:
        return Plan.load(path)
    except PlanError as exc:  # the installer's own error, with the loader's message
        raise ConfigError(str(exc)) from None


def error_for(name: str, text: str, tmp_path: Path) -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(name, path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    return message.removeprefix(f"{path}: ")


@pytest.mark.parametrize("name", list(GOOD))
def test_a_good_file_loads(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(GOOD[name])
    load(name, path)


@pytest.mark.parametrize("name", list(GOOD))
def test_an_unknown_key_is_named_with_a_guess(name: str, tmp_path: Path) -> None:
    key = "port" if name != "node.toml" else "pids_limit"
    typo = key[:-1] + key[-1].upper() if name == "node.toml" else "prot"
    message = error_for(name, GOOD[name] + f"{typo} = 1\n", tmp_path)
    assert message == f'unknown key "{typo}" (did you mean "{key}"?)'


@pytest.mark.parametrize("name", list(GOOD))
def test_a_wrong_type_says_what_was_expected(name: str, tmp_path: Path) -> None:
    line, expected = WRONG_TYPE[name]
    assert error_for(name, GOOD[name] + line + "\n", tmp_path) == expected


@pytest.mark.parametrize("name", list(GOOD))
def test_a_missing_required_key_is_named(name: str, tmp_path: Path) -> None:
    key = MISSING[name]
    text = "".join(line + "\n" for line in GOOD[name].splitlines() if not line.startswith(key))
    if not text:
        text = "port = 8081\n"
    assert error_for(name, text, tmp_path) == f'key "{key}" is required'


@pytest.mark.parametrize("name", list(GOOD))
def test_broken_toml_and_an_unreadable_file(name: str, tmp_path: Path) -> None:
    assert error_for(name, "state_dir = ", tmp_path).startswith("not valid TOML: ")
    with pytest.raises(ConfigError, match="cannot read it: No such file or directory"):
        load(name, tmp_path / "nowhere" / name)


def test_every_problem_is_in_the_one_message(tmp_path: Path) -> None:
    message = error_for("node.toml", 'cpu = "two"\nnetwork_mode = "nat"\n', tmp_path)
    assert message == (
        'key "state_dir" is required; key "controlplane_url" is required;'
        ' key "node_token" is required; key "network_mode": expected one of'
        """ 'none', 'bridge' or 'host', got "nat"; key "cpu": expected a number, got "two\""""
    )


def test_a_written_config_reads_back_the_same(tmp_path: Path) -> None:
    node = NodeConfig(tmp_path / "node", "http://cp:8081", "t", cpu=1.5, network_mode="host")
    node.dump(tmp_path / "node.toml")
    assert NodeConfig.load(tmp_path / "node.toml") == node
    assert "mem =" not in (tmp_path / "node.toml").read_text()  # None means "not set"
    assert (tmp_path / "node.toml").stat().st_mode & 0o777 == 0o600
    cp = ControlPlaneConfig(state_dir=tmp_path, node_token="t", port=9000)
    cp.dump(tmp_path / "controlplane.toml")
    assert ControlPlaneConfig.load(tmp_path / "controlplane.toml") == cp


@pytest.mark.parametrize(
    ("command", "name"), [("controlplane", "controlplane.toml"), ("node", "node.toml")]
)
def test_the_services_say_it_in_one_line_and_exit_non_zero(
    command: str, name: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    line, expected = WRONG_TYPE[name]
    path.write_text(GOOD[name] + line + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "shipyard", command, "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == f"Error: {path}: {expected}\n"
