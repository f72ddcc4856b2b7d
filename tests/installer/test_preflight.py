"""Preflight rules over made-up reports (a pure function: no machine needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from installer._report import Finding, Report
from installer.plan import Plan
from installer.preflight import preflight

GiB = 2**30


def machine(**overrides: Any) -> Report:
    """A report of a healthy machine; keyword arguments replace findings by name."""
    values: dict[str, Any] = {
        "memory": 16 * GiB,
        "user": 0,
        "pid1": "systemd",
        "docker": ("ok", {"version": "24.0.7", "api": "1.43"}),
        "os": {"pretty": "Debian GNU/Linux 12", "id": "debian", "debian_like": True},
        "listening": ["0.0.0.0:22", "127.0.0.1:5432"],
        "mounts": [
            {"mount_point": "/", "fs_type": "ext4", "free_bytes": 100 * GiB},
            {"mount_point": "/var/lib", "fs_type": "xfs", "free_bytes": 500 * GiB},
        ],
        "shipyard": None,
    }
    values.update(overrides)
    docker_status, docker_value = values["docker"]
    return Report(
        system=[
            Finding("os", values["os"], "ok", ""),
            Finding("memory", values["memory"], "ok", ""),
            Finding("user", values["user"], "ok", ""),
            Finding("listening", values["listening"], "info", ""),
        ],
        engine=[Finding("docker", docker_value, docker_status, "")],
        init=[Finding("pid1", values["pid1"], "ok", "")],
        storage=[Finding("mounts", values["mounts"], "info", "")],
        installation=[Finding("shipyard", values["shipyard"], "info", "")],
    )


PLAN = Plan(role="all-in-one")


def messages(report: Report, plan: Plan | None = PLAN) -> list[tuple[str, str]]:
    return [(p.severity, p.message) for p in preflight(report, plan)]


def test_a_healthy_machine_has_no_problems() -> None:
    assert preflight(machine(), PLAN) == []
    assert preflight(machine(), None) == []


def _with_gpus(report: Report, runtimes: list[str], *uuids: str) -> Report:
    engine = Finding("docker", {"version": "24.0.7", "api": "1.43", "runtimes": runtimes}, "ok", "")
    gpus = [
        Finding(f"nvidia gpu {i}", {"name": "A100", "uuid": uuid}, "ok", "A100, 80 GiB")
        for i, uuid in enumerate(uuids)
    ]
    return dataclasses.replace(report, engine=[engine], accelerators=gpus)


def test_nvidia_gpus_without_the_container_toolkit_are_a_warning() -> None:
    report = _with_gpus(machine(), ["runc"], "GPU-1", "GPU-2")
    ((severity, message),) = messages(report)
    assert severity == "warning"
    assert message.startswith("2 NVIDIA GPU(s) found, but the container engine has no nvidia")
    (problem,) = preflight(report, PLAN)
    assert "nvidia-ctk runtime configure" in problem.fix
    assert messages(_with_gpus(machine(), ["nvidia", "runc"], "GPU-1")) == []
    assert messages(report, PLAN.replace(gpus=[])) == []  # the operator offers none of them


def test_gpus_the_machine_does_not_have_are_a_warning() -> None:
    report = _with_gpus(machine(), ["nvidia", "runc"], "GPU-1")
    ((severity, message),) = messages(report, PLAN.replace(gpus=["GPU-1", "GPU-9"]))
    assert severity == "warning" and message.startswith("gpus lists GPU-9, which detection")


def test_a_gpu_without_its_driver_is_a_warning() -> None:
    detail = "NVIDIA GPU(s) at PCI 0000:01:00.0 but no NVIDIA driver answers"
    report = dataclasses.replace(
        machine(), accelerators=[Finding("nvidia", {"pci": ["0000:01:00.0"]}, "warning", detail)]
    )
    assert messages(report) == [("warning", detail)]


def test_memory() -> None:
    ((severity, message),) = messages(machine(memory=int(1.5 * GiB)))
    assert severity == "error" and "1.5 GiB" in message and "at least 2 GiB" in message
    ((severity, _),) = messages(machine(memory=3 * GiB))
    assert severity == "warning"


def test_disk_space_where_the_state_dir_goes() -> None:
    tight = [
        {"mount_point": "/", "fs_type": "ext4", "free_bytes": 100 * GiB},
        {"mount_point": "/var/lib", "fs_type": "xfs", "free_bytes": 5 * GiB},
    ]
    ((severity, message),) = messages(machine(mounts=tight))
    assert severity == "warning"
    assert "5.0 GiB free for /var/lib/shipyard (on /var/lib)" in message
    roomy = Plan(role="all-in-one", state_dir=Path("/srv/shipyard"))  # on / with 100 GiB
    assert messages(machine(mounts=tight), roomy) == []


def test_no_engine_is_an_error_unless_the_plan_installs_one() -> None:
    no_engine = machine(docker=("error", {"installed": False}))
    (problem,) = preflight(no_engine, PLAN)
    assert problem.severity == "error" and "install_engine = true" in problem.fix
    assert preflight(no_engine, Plan(role="all-in-one", install_engine=True)) == []
    fedora = machine(
        docker=("error", {"installed": False}),
        os={"pretty": "Fedora Linux 40", "id": "fedora", "debian_like": False},
    )
    ((severity, message),) = messages(fedora, Plan(role="all-in-one", install_engine=True))
    assert severity == "error" and "Fedora Linux 40" in message
    stopped = machine(docker=("error", {"installed": True}))
    (problem,) = preflight(stopped, PLAN)
    assert "does not answer" in problem.message and "systemctl enable --now docker" in problem.fix


def test_no_systemd_and_not_root() -> None:
    found = preflight(machine(pid1="process_api", user=1000), PLAN)
    assert [p.severity for p in found] == ["error", "error"]
    assert any("PID 1 is process_api" in p.message for p in found)
    assert any("sudo" in p.fix for p in found)


def test_the_chosen_port_taken() -> None:
    taken = machine(listening=["0.0.0.0:22", "127.0.0.1:8081"])
    (problem,) = preflight(taken, PLAN)
    assert problem.severity == "error" and "port 8081 on 127.0.0.1" in problem.message
    assert preflight(taken, Plan(role="all-in-one", port=8082)) == []
    # a node-only install opens no port
    node = Plan(role="node", controlplane_url="http://cp:8081", join_token="syj_x")
    assert preflight(taken, node) == []
    # our own control plane, which a second run upgrades or repairs
    ours = machine(listening=["127.0.0.1:8081"], shipyard={"role": "all-in-one", "port": 8081})
    assert preflight(ours, PLAN) == []


def test_errors_come_first() -> None:
    found = preflight(machine(memory=3 * GiB, pid1="init"), PLAN)
    assert [p.severity for p in found] == ["error", "warning"]
