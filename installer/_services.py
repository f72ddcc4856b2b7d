"""The install steps that run and check the services: start them, wait until they are ready,
write the admin's client settings, and run a session as the final check."""

from __future__ import annotations

import dataclasses
import json
import secrets
import shlex
from pathlib import Path

import httpx
import trio

from installer._files import write_atomic
from installer._step import Run, Step
from installer.errors import StepError
from installer.plan import Plan

HEALTH_TIMEOUT = 120.0
VERIFY_TIMEOUT = 180.0
# a change in any of these means the running services must restart to pick it up
RESTART_TRIGGERS = frozenset({"engine", "executable", "configs", "units", "database"})


# --- the services ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UnitState:
    enabled: bool
    active: bool
    invocation: str


async def unit_state(run: Run, unit: str) -> UnitState:
    _, output = await run.host.systemctl(
        "show", "-p", "UnitFileState", "-p", "ActiveState", "-p", "InvocationID", unit, check=False
    )
    props = dict(line.partition("=")[::2] for line in output.splitlines())
    return UnitState(
        props.get("UnitFileState") == "enabled",
        props.get("ActiveState") == "active",
        props.get("InvocationID", ""),
    )


class Services(Step):
    name = "services"
    title = "Enable and start the services (systemctl enable --now)"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.before: dict[str, UnitState] = {}

    async def check(self) -> bool:
        if self.run.changed & RESTART_TRIGGERS:
            return False
        for unit in self.plan.units:
            state = await unit_state(self.run, unit)
            if not (state.enabled and state.active):
                return False
        return True

    async def apply(self) -> None:
        units = self.plan.units
        self.before = {unit: await unit_state(self.run, unit) for unit in units}
        self.run.facts["invocations"] = {u: s.invocation for u, s in self.before.items()}
        await self.host.systemctl("daemon-reload")
        running = [u for u in units if self.before[u].active]
        stopped = [u for u in units if not self.before[u].active]
        if stopped:
            await self.host.systemctl("enable", "--now", "--no-block", *stopped)
            self.log(f"enabled and started {', '.join(stopped)}")
        if running:
            await self.host.systemctl("enable", *running)
            await self.host.systemctl("restart", "--no-block", *running)
            self.log(f"restarted {', '.join(running)} to pick up the changes")

    async def undo(self) -> None:
        units = self.plan.units
        await self.host.systemctl("stop", *reversed(units), check=False)
        enabled_now = [
            u for u in units if not self.before.get(u, UnitState(False, False, "")).enabled
        ]
        if enabled_now:
            await self.host.systemctl("disable", *enabled_now, check=False)
        await self.host.systemctl("reset-failed", *units, check=False)
        self.log(f"stopped {', '.join(units)}")
        was_running = [u for u in units if self.before.get(u) and self.before[u].active]
        if was_running:

            async def restart_old() -> None:
                await self.host.systemctl("daemon-reload", check=False)
                await self.host.systemctl("start", "--no-block", *was_running, check=False)
                self.log(f"started the previous {', '.join(was_running)}")

            self.run.after_rollback.append(restart_old)


class Health(Step):
    name = "health"
    title = "Wait until the services are ready"
    probe = True

    async def apply(self) -> None:
        units = self.plan.units
        before: dict[str, str] = self.run.facts.get("invocations", {})
        with trio.move_on_after(HEALTH_TIMEOUT):
            async with httpx.AsyncClient(timeout=5.0) as http:
                while True:
                    ready = True
                    for unit in units:
                        ready &= await self._unit_ready(unit, before.get(unit))
                    if ready and await self._answers(http):
                        return
                    await trio.sleep(0.3)
        for unit in units:
            await self._journal(unit)
        raise StepError(
            f"the services were not ready within {HEALTH_TIMEOUT:.0f} s",
            f"see journalctl -u {' -u '.join(units)}",
        )

    async def _unit_ready(self, unit: str, invocation_before: str | None) -> bool:
        _, output = await self.host.systemctl(
            "show", "-p", "ActiveState", "-p", "SubState", "-p", "InvocationID", unit, check=False
        )
        props = dict(line.partition("=")[::2] for line in output.splitlines())
        state, sub = props.get("ActiveState", ""), props.get("SubState", "")
        if state == "failed" or sub == "auto-restart":
            await self._journal(unit)
            raise StepError(f"{unit} failed to start ({state}/{sub})", f"journalctl -u {unit}")
        if invocation_before and props.get("InvocationID") == invocation_before:
            return False  # the restart has not happened yet
        if state != "active":
            return False
        if f"reported:{unit}" not in self.run.facts:
            self.run.facts[f"reported:{unit}"] = True
            self.log(f"{unit} is active (it told systemd it is ready)")
        return True

    async def _answers(self, http: httpx.AsyncClient) -> bool:
        url = f"{self.plan.endpoint}/health"
        try:
            response = await http.get(url)
            health = response.json()
        except (httpx.HTTPError, ValueError):
            return False
        if response.status_code != 200 or not isinstance(health, dict):
            return False
        if self.plan.role == "all-in-one" and int(health.get("nodesAlive", 0)) < 1:
            return False
        self.log(f"GET {url}: {json.dumps(health)}")
        return True

    async def _journal(self, unit: str) -> None:
        _, output = await self.host.run(
            ["journalctl", "-u", unit, "-n", "30", "--no-pager", "-o", "cat"], check=False
        )
        for line in output.strip().splitlines():
            self.log(f"{unit}: {line}")


# --- the admin's credentials and the final check --------------------------------------------


def _read_client_env(path: Path) -> dict[str, str]:
    values = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            words = shlex.split(value)
            values[key] = words[0] if words else ""
    return values


class ClientEnv(Step):
    name = "client-env"
    title = "Write the admin's client settings (client.env)"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.previous: bytes | None = None
        self.wrote = False

    @property
    def path(self) -> Path:
        return self.plan.config_dir / "client.env"

    def _keypair(self) -> tuple[str, str] | None:
        source = self.plan.state_dir / "admin-keypair.json"
        try:
            data = json.loads(source.read_text())
            return str(data["access_key"]), str(data["secret_key"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    async def check(self) -> bool:
        existing = _read_client_env(self.path)
        keypair = self._keypair()
        if keypair is None:
            # the control plane writes the file once; without it, trust a client.env we wrote
            done = bool(existing.get("SHIPYARD_ACCESS_KEY"))
        else:
            done = (
                existing.get("SHIPYARD_ENDPOINT") == self.plan.endpoint
                and (
                    existing.get("SHIPYARD_ACCESS_KEY"),
                    existing.get("SHIPYARD_SECRET_KEY"),
                )
                == keypair
            )
            done = done and (self.path.stat().st_mode & 0o777) == 0o600
        if done:
            self._remember(existing)
        return done

    def _remember(self, values: dict[str, str]) -> None:
        self.run.facts["admin"] = (values["SHIPYARD_ACCESS_KEY"], values["SHIPYARD_SECRET_KEY"])
        self.run.facts["admin_access_key"] = values["SHIPYARD_ACCESS_KEY"]

    async def apply(self) -> None:
        from installer.up import write_client_env

        keypair = self._keypair()
        if keypair is None:
            raise StepError(
                f"no admin keypair in {self.plan.state_dir / 'admin-keypair.json'}: the control"
                " plane writes it when it creates the admin on its first start",
                "if the database existed before, create a keypair (shipyard admin keypair"
                " create) and write client.env yourself",
            )
        if self.path.exists():
            self.previous = self.path.read_bytes()
        self.wrote = True
        write_client_env(self.path, self.plan.endpoint, *keypair)
        self._remember(_read_client_env(self.path))
        self.log(f"wrote {self.path} (mode 0600) for admin {keypair[0]}")

    async def undo(self) -> None:
        if not self.wrote:
            return
        if self.previous is None:
            self.path.unlink(missing_ok=True)
        else:
            write_atomic(self.path, self.previous, 0o600)


class Verify(Step):
    name = "verify"
    title = "Run a session through the API"
    probe = True
    rollback_on_failure = False  # the services work; a missing image is fixed, then re-run

    async def apply(self) -> None:
        if self.plan.role == "node":
            self.log(
                f"node {self.plan.effective_node_id} is registered with"
                f" {self.plan.controlplane_url}; run sessions from the control plane's side"
            )
            return
        with trio.move_on_after(VERIFY_TIMEOUT) as scope:
            output = await self._run_session()
        if scope.cancelled_caught:
            raise StepError(
                f"the check session did not finish within {VERIFY_TIMEOUT:.0f} s",
                "see journalctl -u shipyard-node -u shipyard-controlplane",
            )
        if output.strip() != "42":
            raise StepError(f"print(6*7) printed {output!r}, not 42", "see the node's journal")
        self.run.facts["verified"] = output.strip()
        self.log(f"print(6*7) in a {self.plan.verify_image} session printed 42")

    async def _run_session(self) -> str:
        from client.config import ClientConfig
        from client.errors import APIError, ClientError
        from client.sdk import Client

        access_key, secret_key = self.run.facts["admin"]
        image = self.plan.verify_image
        name = f"install-check-{secrets.token_hex(4)}"
        async with Client(ClientConfig(self.plan.endpoint, access_key, secret_key)) as api:
            try:
                created = await api.create_session(
                    image, name=name, resources={"cpu": "1", "mem": "256m"}
                )
            except APIError as exc:
                if exc.slug == "object-not-found" or "Unknown image" in str(exc):
                    raise StepError(
                        f"no image is aliased {image!r} on this node ({exc})",
                        "shipyard image build python   (then run the install again)",
                    ) from exc
                raise StepError(f"cannot start a session: {exc}") from exc
            except ClientError as exc:
                raise StepError(f"cannot start a session: {exc}") from exc
            try:
                status = created.get("status")
                if status != "RUNNING":
                    raise StepError(
                        f"the check session is {status}: {created.get('statusInfo', '')}"
                    )
                chunks: list[str] = []
                async with api.execute_stream(
                    str(created["sessionId"]), "query", "print(6*7)"
                ) as frames:
                    async for frame in frames:
                        for kind, data in frame.get("console") or []:
                            if kind in ("stdout", "stderr"):
                                chunks.append(str(data))
                        if frame.get("status") == "finished":
                            break
                return "".join(chunks)
            except ClientError as exc:
                raise StepError(f"the check session failed: {exc}") from exc
            finally:
                with trio.move_on_after(30, shield=True):
                    try:
                        await api.destroy_session(name)
                    except ClientError as exc:
                        self.log(f"could not remove the check session {name}: {exc}")
