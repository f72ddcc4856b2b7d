"""The install steps, in the order `install_stages` runs them (the ones that run the services
are in `_services`)."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shlex
import sqlite3
import sys
import tomllib
from pathlib import Path
from typing import Any

import trio

from controlplane.config import ControlPlaneConfig
from hostlib import ConfigError, __version__, render_config
from installer import units as unitfiles
from installer._files import FilesStep, make_dirs
from installer._host import is_debian_like
from installer._layout import UnpackedExecutable, refuse_downgrade
from installer._service_user import (
    GroupReadable,
    ServiceUser,
    TlsFiles,
    TlsProvided,
    as_service_user,
    owned_by,
    service_ids,
)
from installer._services import ClientEnv, Health, Services, Verify
from installer._step import Run, Step
from installer.errors import CommandFailed, PlanError, StepError
from installer.plan import Plan, check_database
from node.config import NodeConfig

DB_BACKUP = "controlplane.db.before-upgrade"


def install_stages(plan: Plan) -> list[list[Step]]:
    first: list[Step] = []
    if plan.database_url:
        first.append(DatabaseReachable(plan))
    if plan.role == "node":
        first.append(JoinCheck(plan))
    prepare: list[Step] = [StateDirs(plan), executable_step(plan)]
    if plan.install_engine:
        prepare.insert(0, Engine(plan))
    stages: list[list[Step]] = [first] if first else []
    if plan.role == "all-in-one" and plan.service_user:
        stages.append([ServiceUser(plan)])  # before anything it will own is made
    configure: list[Step] = [Configs(plan), Units(plan)]
    if plan.tls == "self-signed" and plan.role == "all-in-one":
        configure.insert(0, TlsFiles(plan))
    elif plan.tls == "provided" and plan.role == "all-in-one":
        configure.insert(0, TlsProvided(plan))
    stages += [prepare, configure]
    if plan.role == "all-in-one":
        stages.append([Migrate(plan)])
    stages += [[Services(plan)], [Health(plan)]]
    if plan.role == "all-in-one":
        stages.append([ClientEnv(plan)])
    stages.append([Verify(plan)])
    return stages


def summary(run: Run) -> dict[str, Any]:
    plan = run.plan
    data: dict[str, Any] = {
        "role": plan.role,
        "endpoint": plan.endpoint,
        "node_id": plan.effective_node_id,
        "units": plan.units,
        "executable": str(plan.executable),
        "version": __version__,
        "config_dir": str(plan.config_dir),
        "state_dir": str(plan.state_dir),
        "changed": sorted(run.changed),
    }
    if plan.role == "all-in-one":
        data["client_env"] = str(plan.config_dir / "client.env")
    for key in ("admin_access_key", "upgraded_from", "verified"):
        if key in run.facts:
            data[key] = run.facts[key]
    return data


# --- before anything changes -----------------------------------------------------------------


class DatabaseReachable(Step):
    name = "database-reachable"
    title = "Connect to the PostgreSQL database"
    probe = True

    async def apply(self) -> None:
        try:
            await check_database(self.plan.database_url)
        except PlanError as exc:
            raise StepError(str(exc), "check database_url, and that PostgreSQL is running") from exc
        self.log("the database answers")


class JoinCheck(Step):
    name = "join-check"
    title = "Check that the control plane accepts the join token"
    probe = True

    async def apply(self) -> None:
        from node.errors import NodeError
        from node.link import Endpoint, run_connection

        async def hang_up(_: object) -> None:
            return None

        url = self.plan.controlplane_url
        try:
            await run_connection(Endpoint.parse(url), self.plan.join_token, hang_up)
        except NodeError as exc:
            raise StepError(
                str(exc).replace("check node_token", "check join_token"),
                "make a new token on the control plane (shipyard node token create) and check"
                " controlplane_url",
            ) from exc
        self.log(f"the control plane at {url} accepts the join token")


# --- the machine -----------------------------------------------------------------------------


class Engine(Step):
    name = "engine"
    title = "Install and start the Docker engine (apt-get install docker.io)"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.installed = False
        self.started = False

    async def check(self) -> bool:
        return await self.host.engine_answers()

    async def apply(self) -> None:
        if not is_debian_like():
            raise StepError(
                "install_engine uses apt-get, and this is not Debian or Ubuntu",
                "install Docker yourself, then run the installer with install_engine = false",
            )
        code, _ = await self.host.run(["sh", "-c", "command -v dockerd"], check=False)
        if code != 0:
            env = {"DEBIAN_FRONTEND": "noninteractive"}
            self.log("apt-get install docker.io")
            await self.host.run(["apt-get", "update", "-q"], env=env)
            self.installed = True
            await self.host.run(["apt-get", "install", "-y", "-q", "docker.io"], env=env)
        self.started = True
        await self.host.systemctl("enable", "--now", "docker.service")
        for _ in range(120):  # 60 s
            if await self.host.engine_answers():
                self.log("the Docker engine answers")
                return
            await trio.sleep(0.5)
        raise StepError("the Docker engine did not answer within 60 s", "journalctl -u docker")

    async def undo(self) -> None:
        if self.started:
            await self.host.systemctl("disable", "--now", "docker.service", check=False)
        if self.installed:
            await self.host.run(
                ["apt-get", "remove", "-y", "-q", "docker.io"],
                env={"DEBIAN_FRONTEND": "noninteractive"},
                check=False,
            )
            self.log("removed docker.io again")


class StateDirs(Step):
    name = "state-dirs"
    title = "Create the state directories"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.made: list[Path] = []

    def _wanted(self) -> list[tuple[Path, int, tuple[int, int]]]:
        """Each directory, its mode and owner: the state directory is the control plane's
        (its user's), the node's and the virtual folders root's."""
        plan = self.plan
        service = service_ids(plan) or (0, 0)
        return [
            (plan.state_dir, 0o700, service),
            (plan.state_dir / "node", 0o700, (0, 0)),
            (plan.vfolder_root, 0o755, (0, 0)),
        ]

    def _state_files(self) -> list[Path]:
        """What an earlier control plane (as root) left in its state: the service owns it."""
        state = self.plan.state_dir
        if not state.is_dir():
            return []
        # (the pre-upgrade copy of the database is the installer's: it stays root's)
        return [p for p in state.iterdir() if p.is_file() and p.name != DB_BACKUP]

    async def check(self) -> bool:
        service = service_ids(self.plan) or (0, 0)
        return all(
            path.is_dir() and (path.stat().st_mode & 0o777) == mode and owned_by(path, *owner)
            for path, mode, owner in self._wanted()
        ) and all(owned_by(p, *service) for p in self._state_files())

    async def apply(self) -> None:
        for path, mode, owner in self._wanted():
            made = make_dirs(path, mode)
            self.made += made
            path.chmod(mode)
            os.chown(path, *owner)
            self.log(f"{'created' if made else 'using'} {path} (mode {mode:o})")
        service = service_ids(self.plan)
        if service is not None:
            for path in self._state_files():
                os.chown(path, *service)

    async def undo(self) -> None:
        from installer._files import remove_tree

        for path in reversed(self.made):
            self.log(await trio.to_thread.run_sync(remove_tree, path))
        self.made.clear()


def executable_step(plan: Plan) -> Step:
    return UnpackedExecutable(plan) if getattr(sys, "frozen", False) else Executable(plan)


class Executable(FilesStep):
    """Run from a development checkout: plan.executable is a wrapper script for this virtual
    environment, which works only while that checkout exists. The packaged executable
    (`./dev package`) installs itself unpacked instead (`installer._layout`)."""

    name = "executable"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.title = f"Install the executable as {plan.executable}"

    def files(self) -> dict[Path, tuple[bytes, int]]:
        data = (
            "#!/bin/sh\n"
            "# Written by `shipyard install` run from a development checkout: runs Shipyard\n"
            "# from that virtual environment. Install the packaged executable (dist/shipyard,\n"
            "# built by ./dev package) for a real installation.\n"
            f'exec {shlex.quote(sys.executable)} -m shipyard "$@"\n'
        ).encode()
        return {self.plan.executable: (data, 0o755)}

    async def apply(self) -> None:
        await refuse_downgrade(self)
        self.log("not the packaged executable: installing a wrapper for this checkout's venv")
        await super().apply()


class Configs(GroupReadable):
    name = "configs"
    title = "Write the configuration"
    dir_mode = 0o755

    def same(self, current: bytes, wanted: bytes) -> bool:
        # an operator may have reordered or added settings (they are kept): compare meaning
        try:
            return tomllib.loads(current.decode()) == tomllib.loads(wanted.decode())
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            return False

    def _node_token(self) -> str:
        path = self.plan.config_dir / "controlplane.toml"
        try:
            return ControlPlaneConfig.load(path).node_token
        except ConfigError:
            return secrets.token_urlsafe(32)

    def files(self) -> dict[Path, tuple[bytes, int]]:
        plan = self.plan
        files: dict[Path, tuple[bytes, int]] = {}
        if plan.role == "all-in-one":
            cp = ControlPlaneConfig(
                state_dir=plan.state_dir,
                node_token=self._node_token(),
                host=plan.bind_host,
                port=plan.port,
                database_url=plan.database_url,
                secrets_key_file=str(plan.state_dir / "secrets.key"),
                tls_certfile=str(plan.tls_files[0]) if plan.tls_files else "",
                tls_keyfile=str(plan.tls_files[1]) if plan.tls_files else "",
                vfolder_hosts={"local:volume1": plan.vfolder_root},
            )
            # the control plane's user reads it through its group and cannot change it
            mode = 0o640 if service_ids(plan) is not None else 0o600
            files[plan.config_dir / "controlplane.toml"] = (render_config(cp).encode(), mode)
            token = cp.node_token
        else:
            token = plan.join_token
        settings: dict[str, Any] = {
            "state_dir": plan.state_dir / "node",
            "controlplane_url": plan.endpoint,
            "node_token": token,
            "node_id": plan.effective_node_id,
            "network_mode": plan.network_mode,
            "gpus": plan.gpus,
            # the same path on every node: the storage the control plane writes (a shared
            # filesystem on a cluster)
            "vfolder_roots": [plan.vfolder_root],
        }
        node_path = plan.config_dir / "node.toml"
        try:  # keep what an operator tuned (cpu, mem, ...) across re-runs
            node = dataclasses.replace(NodeConfig.load(node_path), **settings)
        except ConfigError:
            node = NodeConfig(**settings)
        files[node_path] = (render_config(node).encode(), 0o600)
        # what uninstall reads to know what was installed where (0600: a join token is the
        # node's credential, as in node.toml)
        files[plan.config_dir / "install.toml"] = (plan.to_toml().encode(), 0o600)
        return files


class Units(FilesStep):
    name = "units"
    title = "Write the systemd units"

    def files(self) -> dict[Path, tuple[bytes, int]]:
        return {
            self.plan.unit_dir / unit.name: (unit.render().encode(), 0o644)
            for unit in unitfiles.units_for(self.plan)
        }

    async def apply(self) -> None:
        await super().apply()
        paths = list(self.desired())
        code, output = await self.host.run(
            ["systemd-analyze", "verify", *map(str, paths)], time_limit=60, check=False
        )
        if code == 127:
            return
        for line in output.strip().splitlines():
            self.log(f"systemd-analyze verify: {line}")

    async def undo(self) -> None:
        await super().undo()
        await self.host.systemctl("daemon-reload", check=False)


# --- the database ------------------------------------------------------------------------------


class Migrate(Step):
    name = "database"
    title = "Migrate the database schema"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.backup: Path | None = None

    def _argv(self, *extra: str) -> list[str]:
        config = self.plan.config_dir / "controlplane.toml"
        # as the control plane's user: the database and its secrets key are its files
        return as_service_user(
            self.plan,
            [
                str(self.plan.executable),
                "controlplane",
                "migrate",
                "--config",
                str(config),
                *extra,
            ],
        )

    async def check(self) -> bool:
        code, output = await self.host.run(self._argv("--check"), check=False)
        if code not in (0, 1):
            raise CommandFailed(self._argv("--check"), code, output)
        return code == 0

    async def apply(self) -> None:
        db = self.plan.state_dir / "controlplane.db"
        if not self.plan.database_url and db.exists():
            backup = self.plan.state_dir / DB_BACKUP
            await trio.to_thread.run_sync(_sqlite_copy, db, backup)
            self.backup = backup
            self.log(f"saved the database as {backup} first")
        _, output = await self.host.run(self._argv())
        self.log(output)

    async def undo(self) -> None:
        if self.backup is None:
            if self.plan.database_url:
                self.log("a migrated PostgreSQL schema stays: restore it from your backups")
            return
        db = self.plan.state_dir / "controlplane.db"
        await trio.to_thread.run_sync(_sqlite_copy, self.backup, db)
        self.log(f"put the database back from {self.backup}")


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a (possibly live, WAL-mode) SQLite database."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    target.chmod(0o600)


# --- uninstall -------------------------------------------------------------------------------


def installed_plan(config_dir: Path) -> Plan:
    """The plan the installation at `config_dir` was made from (its install.toml)."""
    record = config_dir / "install.toml"
    if record.exists():
        return Plan.load(record)
    return Plan(role="all-in-one", config_dir=config_dir)


def uninstall_steps(plan: Plan, purge: bool) -> list[Step]:
    from installer import _removal

    return _removal.steps(plan, purge)
