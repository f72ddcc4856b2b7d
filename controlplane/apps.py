"""Service ports: the apps a kernel image declares, per image and per session (§10.1).

An image declares its apps in Backend.AI's label `ai.backend.service-ports`: comma-separated
`NAME:PROTOCOL:PORT` or `NAME:PROTOCOL:[PORT1,PORT2]`, protocols `tcp`, `http` and `preopen`
(`pty` entries are skipped, as the 23.09 manager does), ports 1025-65534, none repeated, none of
the ports Backend.AI reserves for its own agent. Nothing is published on the host: the ports are
on the container's own loopback and reached through the relay (controlplane/relay.py).

A session's apps are its image's, as the node that runs it reports the image; a session that
is not running has none (the official client then says the app is not supported).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession as DBSession

from controlplane.db.models import Image, Session
from controlplane.errors import InvalidAPIParams
from controlplane.secretbox import SecretBox

LABEL = "ai.backend.service-ports"
PROTOCOLS = ("tcp", "http", "preopen")
RESERVED_PORTS = frozenset((2000, 2001, 2002, 2003, 2200, 7681))
_ENTRY = re.compile(r"(?P<name>[\w-]+):(?P<proto>\w+):(?P<ports>\[\d+(?:,\d+)*\]|\d+)(?:,|$)")


class ServicePortsError(ValueError):
    """A malformed label; the message says what is wrong."""


@dataclass(frozen=True)
class ServicePort:
    name: str
    protocol: str  # tcp | http | preopen
    ports: tuple[int, ...]  # on the container's loopback; the first is the app's own

    def record(self) -> dict[str, Any]:
        """The stored form Backend.AI's GraphQL `service_ports` carries (§10.2)."""
        return {
            "name": self.name,
            "protocol": self.protocol,
            "container_ports": list(self.ports),
            "host_ports": [],  # nothing is published on the host
            "is_inference": False,
        }


def parse(label: str) -> list[ServicePort]:
    """The apps a label declares; ServicePortsError for a malformed one."""
    apps: list[ServicePort] = []
    seen_ports: set[int] = set()
    position = 0
    text = re.sub(r"\s+", "", label)  # "a:http:8080, b:tcp:9000" as people write it
    while position < len(text):
        match = _ENTRY.match(text, position)
        if match is None:
            raise ServicePortsError(f"{LABEL}: cannot read {text[position:]!r}")
        position = match.end()
        name, protocol = match["name"], match["proto"]
        ports = tuple(int(p) for p in match["ports"].strip("[]").split(","))
        if protocol == "pty":
            continue
        if protocol not in PROTOCOLS:
            raise ServicePortsError(f"{LABEL}: {name}: unknown protocol {protocol!r}")
        for port in ports:
            if not 1025 <= port <= 65534 or port in RESERVED_PORTS:
                raise ServicePortsError(f"{LABEL}: {name}: port {port} is not allowed")
            if port in seen_ports:
                raise ServicePortsError(f"{LABEL}: {name}: port {port} is used twice")
            seen_ports.add(port)
        apps.append(ServicePort(name, protocol, ports))
    return apps


def of_labels(labels: dict[str, Any]) -> list[ServicePort]:
    """An image's apps; ServicePortsError when its label is malformed."""
    label = labels.get(LABEL)
    return parse(label) if isinstance(label, str) else []


async def check_image(db: DBSession, image: str) -> None:
    """InvalidAPIParams when the image's label is malformed (Backend.AI refuses such a
    session at creation too)."""
    for labels in await db.scalars(select(Image.labels).where(Image.name == image)):
        try:
            of_labels(labels or {})
        except ServicePortsError as exc:
            raise InvalidAPIParams(f"image {image}: {exc}") from exc


async def of_sessions(
    db: DBSession, sessions: Collection[Session]
) -> dict[uuid.UUID, list[ServicePort]]:
    """Each session's apps: for a running one its image's, as its node reports the image."""
    running = [s for s in sessions if s.status == "RUNNING" and s.node_id is not None]
    rows = await db.execute(
        select(Image.node_id, Image.name, Image.labels).where(
            Image.node_id.in_({s.node_id for s in running}),
            Image.name.in_({s.image for s in running}),
        )
    )
    labels = {(row.node_id, row.name): row.labels or {} for row in rows}
    found: dict[uuid.UUID, list[ServicePort]] = {s.id: [] for s in sessions}
    for session in running:
        # a malformed label was refused when the session was created; the image changed since
        with contextlib.suppress(ServicePortsError):
            found[session.id] = of_labels(labels.get((session.node_id, session.image), {}))
    return found


async def of_session(db: DBSession, session: Session) -> list[ServicePort]:
    return (await of_sessions(db, [session]))[session.id]


def of_started(labels: dict[str, str]) -> list[ServicePort]:
    """The apps of a session that has just started: its image's `labels`, as the node it runs
    on reports the image."""
    with contextlib.suppress(ServicePortsError):  # refused at creation; the image changed since
        return of_labels(labels)
    return []


def find(apps: list[ServicePort], name: str) -> ServicePort | None:
    return next((app for app in apps if app.name == name), None)


def token(box: SecretBox, session: Session) -> str:
    """The session's app token: apps that want a password use it (JupyterLab's `?token=`);
    only the owner (and admins) see it, in the app's `url_template`."""
    return box.token(f"app:{session.id}")


PROXY_PREFIX = "/app-proxy"


def base_path(session: Session, app: str) -> str:
    """Where the browser proxy serves the app (controlplane/api/app_proxy.py); the app is told
    at start (`SHIPYARD_APP_BASE_PATH`) and serves under it, the local tunnels included."""
    return f"{PROXY_PREFIX}/{session.id}/{app}/"
