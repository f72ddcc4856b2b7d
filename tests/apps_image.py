"""A kernel image with apps, for tests of the relay: the test image plus Backend.AI's
service-ports label and service definitions (an HTTP file server of the work folder, a TCP
echo, and an echo started per connection as inetd starts programs), committed from a
container here: nothing is pulled, nothing is built from a recipe."""

from __future__ import annotations

import io
import json
import tarfile

import docker

APPS_IMAGE = "shipyard-test/python-apps:3.11"
ECHO = (
    "import socket, sys, threading\n"
    "srv = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
    "def echo(c):\n"
    "    with c:\n"
    "        while data := c.recv(65536):\n"
    "            c.sendall(data)\n"
    "while True:\n"
    "    threading.Thread(target=echo, args=(srv.accept()[0],), daemon=True).start()\n"
)
# One process per connection, on its stdin and stdout (as dropbear -i is run). It reads its
# peer's address first and gives up at once when it is longer than getnameinfo can format into
# NI_MAXSERV (32) bytes, as dropbear does, so a runner that hands an inetd app a socket whose
# peer is the node's long socket path fails here as SSH did.
INETD_ECHO = (
    "import os, socket, sys\n"
    "peer = socket.fromfd(0, socket.AF_UNIX, socket.SOCK_STREAM).getpeername()\n"
    "if len(os.fsencode(peer)) >= 32:\n"
    "    sys.exit(f'peer address too long: {peer!r}')\n"
    "os.write(1, b'peer ok\\n')\n"
    "while data := os.read(0, 65536):\n"
    "    os.write(1, data)\n"
)
SERVICE_DEFS: dict[str, dict[str, object]] = {
    "web": {
        "command": [
            "python3", "-m", "http.server", "{ports[0]}", "--bind", "127.0.0.1",
            "--directory", "/home/work",
        ]
    },
    "echo": {"command": ["python3", "-c", ECHO, "{ports[0]}"]},
    "inetd-echo": {"command": ["python3", "-c", INETD_ECHO], "inetd": True},
}  # fmt: skip
LABEL = "web:http:8080,echo:tcp:9000,inetd-echo:tcp:9100"


def build_apps_image(base: str) -> None:
    client = docker.from_env()
    try:
        container = client.containers.create(base, command=["true"])
        try:
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w") as tar:
                for name, definition in SERVICE_DEFS.items():
                    data = json.dumps(definition).encode()
                    info = tarfile.TarInfo(f"etc/backend.ai/service-defs/{name}.json")
                    info.size, info.mode = len(data), 0o644
                    tar.addfile(info, io.BytesIO(data))
            container.put_archive("/", archive.getvalue())
            repository, tag = APPS_IMAGE.split(":")
            container.commit(repository, tag, changes=[f'LABEL ai.backend.service-ports="{LABEL}"'])
        finally:
            container.remove(force=True)
    finally:
        client.close()
