"""The engine's one seam to the host's services: commands (systemctl, apt-get, the installed
executable) and the container engine. `SystemHost` is the real one; `installer.testing` has a
double that plays systemd for tests on machines where PID 1 is something else."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import trio

from hostlib import host_environ
from installer.errors import CommandFailed, StepError

LABEL_NODE = "ai.shipyard.node-id"
COMMAND_TIMEOUT = 600.0


class Host(Protocol):
    async def run(
        self,
        argv: Sequence[str],
        *,
        time_limit: float = COMMAND_TIMEOUT,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> tuple[int, str]:
        """(exit status, stdout and stderr); CommandFailed when `check` and it failed."""
        ...

    async def systemctl(self, *args: str, check: bool = True) -> tuple[int, str]: ...

    async def engine_answers(self) -> bool: ...

    async def session_containers(self, node_id: str) -> list[str]:
        """Ids of every container (running or not) labelled as this node's."""
        ...

    async def remove_container(self, container_id: str) -> None: ...


def command_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for host commands: without the packaged executable's library path, and
    with PyInstaller told to start other copies of Shipyard as independent programs."""
    env = host_environ()
    env["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.update(extra or {})
    return env


class SystemHost:
    async def run(
        self,
        argv: Sequence[str],
        *,
        time_limit: float = COMMAND_TIMEOUT,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> tuple[int, str]:
        argv = list(argv)
        if shutil.which(argv[0], path=command_environ().get("PATH")) is None:
            if check:
                raise StepError(f"{argv[0]} is not installed here")
            return 127, f"{argv[0]}: not found"
        try:
            with trio.fail_after(time_limit):
                result = await trio.run_process(
                    argv,
                    capture_stdout=True,
                    stderr=subprocess.STDOUT,
                    stdin=b"",
                    check=False,
                    env=command_environ(env),
                )
        except trio.TooSlowError:
            raise StepError(
                f"`{' '.join(argv)}` did not finish within {time_limit:.0f} s"
            ) from None
        output = result.stdout.decode(errors="replace")
        if check and result.returncode != 0:
            raise CommandFailed(argv, result.returncode, output)
        return result.returncode, output

    async def systemctl(self, *args: str, check: bool = True) -> tuple[int, str]:
        return await self.run(["systemctl", *args], time_limit=120, check=check)

    async def engine_answers(self) -> bool:
        def ping() -> bool:
            import docker

            try:
                client = docker.from_env(timeout=5)
            except docker.errors.DockerException:
                return False
            try:
                return bool(client.ping())
            except (docker.errors.DockerException, OSError):
                return False
            finally:
                client.close()

        return await trio.to_thread.run_sync(ping)

    async def session_containers(self, node_id: str) -> list[str]:
        def listing() -> list[str]:
            import docker

            client = docker.from_env(timeout=30)
            try:
                found = client.api.containers(
                    all=True, filters={"label": f"{LABEL_NODE}={node_id}"}
                )
                return [str(c["Id"]) for c in found]
            finally:
                client.close()

        try:
            return await trio.to_thread.run_sync(listing)
        except Exception as exc:  # docker's errors, OSError: the engine is not there
            raise StepError(f"cannot list the node's containers: {exc}") from exc

    async def remove_container(self, container_id: str) -> None:
        def remove() -> None:
            import docker

            client = docker.from_env(timeout=60)
            try:
                client.api.remove_container(container_id, force=True)
            except docker.errors.NotFound:
                pass
            finally:
                client.close()

        await trio.to_thread.run_sync(remove)


def is_debian_like() -> bool:
    from installer._sysinfo import is_debian_like as check
    from installer._sysinfo import parse_os_release

    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return False
    return check(parse_os_release(text))
