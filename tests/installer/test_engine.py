"""The install engine with every path in a temporary root. systemd is played by
installer.testing.FakeSystemdHost (PID 1 here is not systemd), which runs the units' services
for real where a test opens `host.serving()`; everything else is real: files, the executable (a
wrapper around this venv) and the database migration (answered in-process through the function
the installed executable's command runs). Real systemd is covered by test_systemd_e2e.py."""

from __future__ import annotations

import itertools
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from installer import _steps, engine
from installer.engine import (
    Event,
    Finished,
    RollingBack,
    Run,
    StepFailed,
    StepFinished,
    StepLog,
    StepStarted,
)
from installer.plan import Plan
from installer.testing import FakeSystemdHost
from installer.units import CONTROLPLANE_UNIT
from shipyard.testing import free_port

PID1 = Path("/proc/1/comm").read_text().strip()


@pytest.fixture
def root() -> Iterator[Path]:
    # short: kernel socket paths under the state dir must stay under 107 bytes
    path = Path(tempfile.mkdtemp(prefix="sy-inst-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def plan(root: Path) -> Plan:
    return Plan(
        role="all-in-one",
        executable=root / "bin" / "shipyard",
        state_dir=root / "state",
        vfolder_root=root / "state" / "vfolders",
        config_dir=root / "etc",
        unit_dir=root / "units",
        port=free_port(),
        node_id="i-test-engine",
        service_user="",  # this machine's users stay as they are (test_systemd_e2e makes one)
    )


def everything(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.trio
async def test_a_failed_step_undoes_the_steps_before_it(root: Path, plan: Plan) -> None:
    host = FakeSystemdHost(plan.unit_dir, fail={"enable": "Failed to enable unit: Access denied"})
    events: list[Event] = []
    outcome = await engine.install(plan, events.append, host=host, check_first=False)

    assert not outcome.ok
    assert outcome.summary["failed_step"] == "services"
    assert "Access denied" in outcome.error
    failed = [e for e in events if isinstance(e, StepFailed)]
    assert [e.step for e in failed] == ["services"]
    # the steps before it changed things (the migration really ran, through the wrapper)...
    finished = {e.step: e.changed for e in events if isinstance(e, StepFinished)}
    assert finished == {
        "state-dirs": True,
        "executable": True,
        "configs": True,
        "units": True,
        "database": True,
    }
    # ...and were undone in reverse plan order, the failed one first
    undone = [e.step for e in events if isinstance(e, RollingBack)]
    assert undone == ["services", "database", "units", "configs", "executable", "state-dirs"]
    # the steps of a stage ran at once, but their events come one step after the other
    started = [e.step for e in events if isinstance(e, StepStarted)]
    assert started == ["state-dirs", "executable", "configs", "units", "database", "services"]
    first_undo = next(i for i, e in enumerate(events) if isinstance(e, RollingBack))
    steps_said = [e.step for e in events[:first_undo] if not isinstance(e, Finished)]
    assert [step for step, _ in itertools.groupby(steps_said)] == started
    assert isinstance(events[-1], Finished) and not events[-1].ok
    assert everything(root) == []  # nothing left: no files, no directories
    assert ["systemctl", "disable", "shipyard-controlplane.service"] not in host.calls


@pytest.mark.trio
async def test_a_service_that_cannot_start_fails_the_health_check_with_its_journal(
    root: Path, plan: Plan
) -> None:
    """The units run for real (FakeSystemdHost.serving): the control plane cannot listen on a
    port something else holds, exits, and the health step says so with its journal."""
    host = FakeSystemdHost(plan.unit_dir)
    events: list[Event] = []
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", plan.port))
        squatter.listen()
        async with host.serving():
            outcome = await engine.install(plan, events.append, host=host, check_first=False)

    assert not outcome.ok
    assert outcome.summary["failed_step"] == "health"
    assert "shipyard-controlplane.service failed to start" in outcome.error
    said = [e.line for e in events if isinstance(e, StepLog) and e.step == "health"]
    # the control plane's own words, from its journal
    assert f"{CONTROLPLANE_UNIT}: Error: [Errno 98] Address already in use" in said, said
    undone = [e.step for e in events if isinstance(e, RollingBack)]
    assert undone == ["services", "database", "units", "configs", "executable", "state-dirs"]
    assert not any(unit.active for unit in host.units.values())
    assert everything(root) == []


@pytest.mark.trio
async def test_a_failed_rerun_puts_back_what_was_there(root: Path, plan: Plan) -> None:
    old_unit = "[Service]\nExecStart=/bin/true\n"
    (plan.unit_dir).mkdir()
    (plan.unit_dir / "shipyard-node.service").write_text(old_unit)
    plan.config_dir.mkdir()
    (plan.config_dir / "node.toml").write_text("# an older node.toml\n")
    host = FakeSystemdHost(plan.unit_dir, fail={"enable": "no"})
    outcome = await engine.install(plan, lambda _: None, host=host, check_first=False)

    assert not outcome.ok
    assert (plan.unit_dir / "shipyard-node.service").read_text() == old_unit
    assert (plan.config_dir / "node.toml").read_text() == "# an older node.toml\n"
    assert everything(root) == ["etc", "etc/node.toml", "units", "units/shipyard-node.service"]


@pytest.mark.trio
async def test_cancelling_an_install_rolls_it_back(root: Path, plan: Plan) -> None:
    host = FakeSystemdHost(plan.unit_dir, hang={"enable"})
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, StepStarted) and event.step == "services":
            scope.cancel()  # like Ctrl-C while the services start

    with trio.CancelScope() as scope:
        await engine.install(plan, on_event, host=host, check_first=False)
    assert scope.cancelled_caught
    assert next(e.step for e in events if isinstance(e, RollingBack)) == "services"
    assert everything(root) == []


@pytest.mark.trio
async def test_each_step_is_done_once(root: Path, plan: Plan) -> None:
    host = FakeSystemdHost(plan.unit_dir)
    run = Run(plan, host, lambda _: None)
    for make in (
        _steps.StateDirs,
        _steps.Executable,
        _steps.Configs,
        _steps.Units,
        _steps.Migrate,
    ):
        step = make(plan)
        step.run = run
        assert not await step.check(), make.name
        await step.apply()
        again = make(plan)  # a later run: a fresh step must find it done
        again.run = run
        assert await again.check(), f"{make.name} is not done after apply"
    assert (plan.state_dir.stat().st_mode & 0o777) == 0o700
    assert (plan.config_dir / "controlplane.toml").stat().st_mode & 0o777 == 0o600
    node_toml = (plan.config_dir / "node.toml").read_text()
    assert 'node_id = "i-test-engine"' in node_toml
    assert f'controlplane_url = "http://127.0.0.1:{plan.port}"' in node_toml
    assert f'state_dir = "{plan.state_dir}/node"' in node_toml
    assert Plan.load(plan.config_dir / "install.toml") == plan
    wrapper = plan.executable.read_text()
    assert wrapper.startswith("#!/bin/sh\n") and "-m shipyard" in wrapper


@pytest.mark.trio
async def test_an_operators_node_settings_survive_a_rerun(root: Path, plan: Plan) -> None:
    run = Run(plan, FakeSystemdHost(plan.unit_dir), lambda _: None)
    step = _steps.Configs(plan)
    step.run = run
    await step.apply()
    path = plan.config_dir / "node.toml"
    path.write_text(path.read_text() + 'mem = "8g"\n')
    again = _steps.Configs(plan)
    again.run = run
    assert await again.check()  # nothing to change: the tuned value is kept, not reset


@pytest.mark.trio
async def test_preflight_stops_before_anything_changes(root: Path, plan: Plan) -> None:
    if PID1 == "systemd":
        pytest.skip("this machine runs systemd: preflight has nothing to object to")
    events: list[Event] = []
    outcome = await engine.install(plan, events.append, host=FakeSystemdHost(plan.unit_dir))
    assert not outcome.ok
    assert "not systemd" in outcome.error and "shipyard up" in outcome.fix
    assert [e.step for e in events if isinstance(e, StepStarted)] == ["preflight"]
    assert everything(root) == []


@pytest.mark.trio
async def test_uninstall_removes_all_but_the_state_and_is_idempotent(
    root: Path, plan: Plan
) -> None:
    host = FakeSystemdHost(plan.unit_dir, containers={"i-test-engine": ["c1", "c2"]})
    run = Run(plan, host, lambda _: None)
    for make in (_steps.StateDirs, _steps.Executable, _steps.Configs, _steps.Units):
        step = make(plan)
        step.run = run
        await step.apply()
    await host.systemctl("enable", "--now", *plan.units)

    events: list[Event] = []
    outcome = await engine.uninstall(plan.config_dir, False, events.append, host=host)
    assert outcome.ok, outcome
    assert host.containers == {"i-test-engine": []}
    assert not any(u.enabled or u.active for u in host.units.values())
    # the directories that held the executable and the units are the system's (/usr/local/bin,
    # /etc/systemd/system): they stay
    assert everything(root) == ["bin", "state", "state/node", "state/vfolders", "units"]
    assert outcome.summary["kept"] == [str(plan.state_dir)]

    events.clear()
    outcome = await engine.uninstall(plan.config_dir, True, events.append, host=host, plan=plan)
    assert outcome.ok
    changed = [e.step for e in events if isinstance(e, StepFinished) and e.changed]
    assert changed == ["purge"]  # everything else was already gone
    assert everything(root) == ["bin", "units"]


def test_describe_lists_the_steps_in_order(plan: Plan) -> None:
    assert [name for name, _ in engine.describe(plan)] == [
        "state-dirs",
        "executable",
        "configs",
        "units",
        "database",
        "services",
        "health",
        "client-env",
        "verify",
    ]
    node = Plan(role="node", controlplane_url="http://cp:8081", join_token="syj_x")
    assert [name for name, _ in engine.describe(node)][:1] == ["join-check"]
    assert "database" not in dict(engine.describe(node))


@pytest.mark.trio
async def test_a_newer_installed_version_is_not_downgraded(root: Path, plan: Plan) -> None:
    plan.executable.parent.mkdir()
    newer = '#!/bin/sh\necho "shipyard, version 99.0.0"\n'
    plan.executable.write_text(newer)
    plan.executable.chmod(0o755)
    events: list[Event] = []
    outcome = await engine.install(
        plan, events.append, host=FakeSystemdHost(plan.unit_dir), check_first=False
    )
    assert not outcome.ok and outcome.summary["failed_step"] == "executable"
    assert "is version 99.0.0, newer than this installer" in outcome.error
    assert plan.executable.read_text() == newer  # left as it was
    assert everything(root) == ["bin", "bin/shipyard"]
