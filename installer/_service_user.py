"""The control plane's own system user, and the files it may read: it runs unprivileged
(`plan.service_user`), owns its state directory, and reads its configuration and TLS key
through its group (root:USER 0640, so it cannot change them)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import trio

from installer import _tls
from installer._files import FilesStep
from installer._step import Step
from installer.errors import StepError
from installer.plan import Plan


def service_ids(plan: Plan) -> tuple[int, int] | None:
    """(uid, gid) of the control plane's user; None when it runs as root (or there is none
    on this machine: the node role)."""
    if plan.role == "node" or not plan.service_user:
        return None
    try:
        entry = pwd.getpwnam(plan.service_user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def as_service_user(plan: Plan, argv: list[str]) -> list[str]:
    """`argv` run as the control plane's user (for what creates files in its state)."""
    ids = service_ids(plan)
    if ids is None:
        return argv
    return ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups", *argv]


def owned_by(path: Path, uid: int, gid: int) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return (st.st_uid, st.st_gid) == (uid, gid)


class ServiceUser(Step):
    name = "service-user"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.title = f"Create the system user {plan.service_user!r} the control plane runs as"
        self.created = False

    async def check(self) -> bool:
        return service_ids(self.plan) is not None

    async def apply(self) -> None:
        user = self.plan.service_user
        await self.host.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                str(self.plan.state_dir),
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "Shipyard control plane",
                user,
            ]
        )
        self.created = True
        if service_ids(self.plan) is None:
            raise StepError(f"useradd said it made {user!r}, but there is no such user")
        self.log(f"created the system user {user}")

    async def undo(self) -> None:
        if self.created:
            await self.host.run(["userdel", self.plan.service_user], check=False)
            self.log(f"removed the system user {self.plan.service_user}")
            self.created = False


class RemoveServiceUser(Step):
    """With the state gone (uninstall --purge), its owner goes too."""

    name = "service-user"
    title = "Remove the control plane's system user"

    async def check(self) -> bool:
        return service_ids(self.plan) is None

    async def apply(self) -> None:
        await self.host.run(["userdel", self.plan.service_user])
        self.log(f"removed the system user {self.plan.service_user}")


class GroupReadable(FilesStep):
    """Files the control plane reads through its group: root:USER 0640."""

    def group_files(self) -> list[Path]:
        return [p for p, (_, mode) in self.desired().items() if mode == 0o640]

    def _reachable(self, path: Path, gid: int) -> bool:
        """The group can open `path`: it owns it, and may search its directory."""
        parent = path.parent.stat()
        searchable = parent.st_mode & 0o001 or (parent.st_gid == gid and parent.st_mode & 0o010)
        return owned_by(path, 0, gid) and bool(searchable)

    async def check(self) -> bool:
        ids = service_ids(self.plan)
        grouped = ids is None or all(self._reachable(p, ids[1]) for p in self.group_files())
        return grouped and await super().check()

    async def apply(self) -> None:
        await super().apply()
        ids = service_ids(self.plan)
        if ids is None:
            return
        for path in self.group_files():
            os.chown(path, 0, ids[1])
            if not self._reachable(path, ids[1]):  # e.g. an operator made the directory 0700
                os.chown(path.parent, 0, ids[1])
                path.parent.chmod(path.parent.stat().st_mode & 0o7777 | 0o010)
                self.log(f"let group {self.plan.service_user} search {path.parent}")


class TlsFiles(GroupReadable):
    """The self-signed certificate and its key (tls = "self-signed"), made once and kept."""

    name = "tls"
    title = "Make the control plane's self-signed TLS certificate"
    dir_mode = 0o755

    def files(self) -> dict[Path, tuple[bytes, int]]:
        files = self.plan.tls_files
        assert files is not None
        cert_path, key_path = files
        if cert_path.exists() and key_path.exists() and not _tls.check_pair(cert_path, key_path):
            cert, key = cert_path.read_bytes(), key_path.read_bytes()
        else:
            cert, key = _tls.self_signed(_tls.names_for(self.plan.bind_host))
        key_mode = 0o640 if service_ids(self.plan) is not None else 0o600
        return {cert_path: (cert, 0o644), key_path: (key, key_mode)}

    async def apply(self) -> None:
        await super().apply()
        cert = self.plan.tls_files[0] if self.plan.tls_files else ""
        self.log(f"clients on other machines trust {cert} (SSL_CERT_FILE={cert})")


class TlsProvided(Step):
    """The operator's certificate (tls = "provided"): usable, and readable by the service."""

    name = "tls"
    title = "Check the provided TLS certificate and key"

    async def check(self) -> bool:
        return False

    async def apply(self) -> None:
        files = self.plan.tls_files
        assert files is not None
        problem = await trio.to_thread.run_sync(_tls.check_pair, *files)
        if problem:
            raise StepError(problem, "give tls_certfile and tls_keyfile in PEM, matching")
        ids = service_ids(self.plan)
        if ids is not None and not _readable_by(files[1], *ids):
            raise StepError(
                f"{files[1]} is not readable by {self.plan.service_user}",
                f"chgrp {self.plan.service_user} {files[1]} && chmod 0640 {files[1]}",
            )
        self.log(f"serving HTTPS with {files[0]}")


def _readable_by(path: Path, uid: int, gid: int) -> bool:
    st = path.stat()
    return bool(
        (st.st_uid == uid and st.st_mode & 0o400)
        or (st.st_gid == gid and st.st_mode & 0o040)
        or st.st_mode & 0o004
    )
