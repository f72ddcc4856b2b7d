"""The uninstall steps: each checks whether its part is already gone, so uninstalling twice
(or after a half-failed install) is fine."""

from __future__ import annotations

from pathlib import Path

import trio

from hostlib import ConfigError
from installer._files import remove_tree
from installer._layout import program_dir, remove_program
from installer._step import Step
from installer.plan import Plan
from node.config import NodeConfig
from node.hostfs import remove_kernel_dirs


def steps(plan: Plan, purge: bool) -> list[Step]:
    found: list[Step] = [
        StopServices(plan),
        RemoveContainers(plan),
        RemoveUnits(plan),
        RemoveExecutable(plan),
        RemoveConfigs(plan),
    ]
    if purge:
        from installer._service_user import RemoveServiceUser

        found += [Purge(plan), RemoveServiceUser(plan)]
    return found


def _present_units(plan: Plan) -> list[str]:
    from installer.units import UNIT_NAMES

    return [name for name in UNIT_NAMES if (plan.unit_dir / name).exists()]


class StopServices(Step):
    name = "stop-services"
    title = "Stop and disable the services"

    async def check(self) -> bool:
        return not _present_units(self.plan)

    async def apply(self) -> None:
        units = _present_units(self.plan)
        # the node first: it must not restart containers while they are being removed
        for unit in sorted(units, key=lambda u: "controlplane" in u):
            await self.host.systemctl("disable", "--now", unit, check=False)
            self.log(f"stopped and disabled {unit}")


class RemoveContainers(Step):
    name = "containers"
    title = "Remove the node's session containers"

    def _node_id(self) -> str:
        try:
            return NodeConfig.load(self.plan.config_dir / "node.toml").node_id
        except ConfigError:
            return self.plan.effective_node_id

    async def check(self) -> bool:
        return not await self.host.session_containers(self._node_id())

    async def apply(self) -> None:
        node_id = self._node_id()
        for container_id in await self.host.session_containers(node_id):
            await self.host.remove_container(container_id)
            self.log(f"removed container {container_id[:12]} (node {node_id})")
        # their work filesystems stay mounted until their folders go (before Purge empties them)
        await trio.to_thread.run_sync(remove_kernel_dirs, self.plan.state_dir / "node")


class RemoveUnits(Step):
    name = "units"
    title = "Remove the systemd units"

    async def check(self) -> bool:
        return not _present_units(self.plan)

    async def apply(self) -> None:
        units = _present_units(self.plan)
        for unit in units:
            (self.plan.unit_dir / unit).unlink()
            self.log(f"removed {self.plan.unit_dir / unit}")
        await self.host.systemctl("daemon-reload", check=False)
        await self.host.systemctl("reset-failed", *units, check=False)


class RemoveExecutable(Step):
    name = "executable"
    title = "Remove the executable"

    async def check(self) -> bool:
        link = self.plan.executable
        return not (link.exists() or link.is_symlink() or program_dir(self.plan).exists())

    async def apply(self) -> None:
        for line in await trio.to_thread.run_sync(remove_program, self.plan):
            self.log(line)


class RemoveConfigs(Step):
    name = "configs"
    title = "Remove the configuration"

    async def check(self) -> bool:
        return not self.plan.config_dir.exists()

    async def apply(self) -> None:
        self.log(await trio.to_thread.run_sync(remove_tree, self.plan.config_dir))


class Purge(Step):
    name = "purge"
    title = "Remove the state (database, keys, virtual folders)"

    def _targets(self) -> list[Path]:
        state, vfolders = self.plan.state_dir, self.plan.vfolder_root
        targets = [state]
        if not vfolders.is_relative_to(state):
            targets.append(vfolders)
        return targets

    async def check(self) -> bool:
        return all(not p.exists() or (p.is_dir() and not any(p.iterdir())) for p in self._targets())

    async def apply(self) -> None:
        state, vfolders = self.plan.state_dir, self.plan.vfolder_root
        self.log(await trio.to_thread.run_sync(remove_tree, state))
        if vfolders.is_relative_to(state) or not vfolders.exists():
            return
        if any(vfolders.iterdir()):
            self.log(f"kept {vfolders}: it holds data and lies outside {state}; remove it yourself")
        else:
            vfolders.rmdir()
            self.log(f"removed {vfolders}")
