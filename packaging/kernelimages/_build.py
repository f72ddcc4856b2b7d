"""Kernel images built from recipes, without a registry.

There is no registry to pull from (and an air-gapped site has none either), so every kernel image
is assembled as a root filesystem in a temporary directory and handed to the engine with
`docker import`. Two recipes, and a lab variant of each (kernelimages/_lab.py):

- ``python`` — the default kernel image ``shipyard/python:3.11``: a minimal Debian bookworm made by
  debootstrap from a Debian mirror (``SHIPYARD_DEBIAN_MIRROR``), with Python 3 and its full
  standard library. About 40 s; needs root and the debootstrap package.
- ``python-host`` — the test fixture ``shipyard-test/python:3.11``, copied from this host's own
  Debian packages (python3.11 and its standard library, CA certificates, time zones, media types),
  the shared libraries they link, and busybox for ``/bin/sh`` and the usual commands. About 2 s,
  no network.

Both add a ``work`` user (uid/gid 1000) whose home ``/home/work`` is the working directory, and the
label ``ai.shipyard.kernel=1`` that marks an image as a kernel image. Rebuilding replaces the tag
(the image it pointed at before is removed when nothing else uses it).

The docker SDK is imported inside the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hostlib import host_environ

PYTHON_IMAGE = "shipyard/python:3.11"
FIXTURE_IMAGE = "shipyard-test/python:3.11"
LAB_IMAGE = "shipyard/python-lab:3.11"
FIXTURE_LAB_IMAGE = "shipyard-test/python-lab:3.11"
RECIPES: dict[str, str] = {
    "python": PYTHON_IMAGE,
    "python-host": FIXTURE_IMAGE,
    # the base image plus JupyterLab, ttyd and dropbear (kernelimages/_lab.py)
    "python-lab": LAB_IMAGE,
    "python-host-lab": FIXTURE_LAB_IMAGE,
}
BASE_RECIPES = ("python", "python-host")

# Bumped when the recipes change what they build: `build --if-missing` rebuilds older images.
RECIPE_REVISION = "2"
REVISION_LABEL = "ai.shipyard.recipe.revision"
# The same for the lab recipes' own layer (kernelimages/_lab.py): bumping it rebuilds the lab
# images alone, on the base images there are.
LAB_REVISION = "2"
LAB_REVISION_LABEL = "ai.shipyard.recipe.lab-revision"

DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WORK_UID = 1000
WORK_GID = 1000

# Debian packages whose files make up the fixture's Python. The first four are required (the
# interpreter lives in python3.11-minimal, the core of the standard library in
# libpython3.11-minimal); the others only add data and are skipped with a note when absent.
_HOST_REQUIRED = (
    "python3.11",
    "python3.11-minimal",
    "libpython3.11-stdlib",
    "libpython3.11-minimal",
)
_HOST_OPTIONAL = ("ca-certificates", "tzdata", "media-types")
_HOST_PYTHON = "/usr/bin/python3.11"
_HOST_SKIP = (
    "/usr/share/doc/",
    "/usr/share/man/",
    "/usr/share/info/",
    "/usr/share/lintian/",
    "/usr/share/locale/",
    "/usr/share/applications/",
    "/usr/share/pixmaps/",
    "/usr/share/binfmts/",
)

_APT_HINT_HOST = "apt-get install -y python3.11 busybox-static"


class ImageBuildError(Exception):
    """A kernel image could not be built; the message says why and what to install or fix."""


Log = Callable[[str], None]


# --------------------------------------------------------------------------------------- public


def image_exists(name: str, *, current: bool = False, lab: bool = False) -> bool:
    """Whether the engine has an image called `name` (never pulls); with `current`, one built
    by this revision of the recipes (with `lab`, of the lab recipes' layer too)."""
    import docker.errors

    client = _client()
    try:
        labels = client.images.get(name).labels or {}
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.DockerException as exc:
        raise ImageBuildError(f"cannot look up image {name}: {exc}") from exc
    finally:
        client.close()
    if not current:
        return True
    return labels.get(REVISION_LABEL) == RECIPE_REVISION and (
        not lab or labels.get(LAB_REVISION_LABEL) == LAB_REVISION
    )


def build_image(recipe: str, *, tag: str | None = None, log: Log = print) -> str:
    """Build the image of `recipe` ("python" or "python-host"; the lab recipes are
    kernelimages._lab's), tag it, return its name."""
    if recipe not in BASE_RECIPES:
        raise ImageBuildError(
            f"unknown image recipe {recipe!r}; choose one of: {', '.join(BASE_RECIPES)}"
        )
    name = tag or RECIPES[recipe]
    started = time.monotonic()
    # Fail on a missing prerequisite before creating anything.
    if recipe == "python":
        debootstrap = _check_debootstrap()
    else:
        _check_host_python()
    workdir = Path(tempfile.mkdtemp(prefix="shipyard-imagebuild-"))
    try:
        rootfs = workdir / "rootfs"
        tar_path = workdir / "rootfs.tar"
        if recipe == "python":
            mirror = os.environ.get("SHIPYARD_DEBIAN_MIRROR", "").strip() or DEFAULT_MIRROR
            _debootstrap(debootstrap, rootfs, mirror, workdir / "debootstrap.log", log)
            _strip_debian(rootfs)
            _add_work_user(rootfs, shell="/bin/bash")
            changes = [*_base_changes(), "LABEL ai.shipyard.aliases=python,python3"]
            _write_tar(rootfs, tar_path, force_owner=False)
        else:
            log(f"collecting this host's python3.11 for {name}")
            _populate_from_host(rootfs, log)
            _add_work_user(rootfs, shell="/bin/sh")
            changes = _base_changes()
            _write_tar(rootfs, tar_path, force_owner=True)
        log(f"importing {name} ({tar_path.stat().st_size / 1e6:.0f} MB of files)")
        _import(tar_path, name, changes)
    finally:
        _remove_workdir(workdir, log)
    log(f"built {name} in {time.monotonic() - started:.1f} s")
    return name


# --------------------------------------------------------------------------------- the engine


def _client() -> Any:
    import docker

    try:
        return docker.from_env(timeout=600)
    except docker.errors.DockerException as exc:
        raise ImageBuildError(
            f"cannot reach the Docker engine (is dockerd running?): {exc}"
        ) from exc


def _base_changes() -> list[str]:
    # Both recipes are Python images: a batch run without an exec command runs main.py, as
    # Backend.AI's Python kernel does (controlplane/batch.py reads these labels).
    return [
        "LABEL ai.shipyard.kernel=1",
        'LABEL ai.shipyard.batch.exec="python main.py" ai.shipyard.batch.exec.if=main.py',
        f"LABEL {REVISION_LABEL}={RECIPE_REVISION}",
        f"ENV PATH={PATH_ENV}",
        "ENV LANG=C.UTF-8",
        "WORKDIR /home/work",
        'CMD ["python3"]',
    ]


def _split_name(name: str) -> tuple[str, str]:
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return name, "latest"
    return repo, tag


def _import(tar_path: Path, name: str, changes: list[str]) -> str:
    """`docker import` the tarball as `name`; drop the image the tag pointed at before."""
    import docker.errors

    repo, tag = _split_name(name)
    client = _client()
    try:
        try:
            old_id: str | None = client.images.get(name).id
        except docker.errors.ImageNotFound:
            old_id = None
        # An open file (never a path string: the SDK treats a path it cannot open as a URL for
        # the engine to fetch).
        with tar_path.open("rb") as f:
            answer = client.api.import_image(src=f, repository=repo, tag=tag, changes=changes)
        for line in str(answer).splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and (item.get("error") or item.get("errorDetail")):
                raise ImageBuildError(f"docker import of {name} failed: {item.get('error')}")
        new_id: str = client.images.get(name).id
        if old_id and old_id != new_id:
            # Still used by a container or another tag: leave it.
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(old_id)
        return new_id
    except docker.errors.DockerException as exc:
        raise ImageBuildError(f"docker import of {name} failed: {exc}") from exc
    finally:
        client.close()


def _write_tar(rootfs: Path, tar_path: Path, *, force_owner: bool) -> None:
    """Tar the tree with numeric owners; `force_owner` makes everything root's except the work
    home (so the fixture builds the same without root)."""

    def entry(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        # Device nodes and mount points: the engine provides /dev, /proc and /sys itself.
        if re.match(r"\./(dev|proc|sys)/", info.name):
            return None
        info.uname = info.gname = ""
        if force_owner:
            work = info.name == "./home/work" or info.name.startswith("./home/work/")
            info.uid, info.gid = (WORK_UID, WORK_GID) if work else (0, 0)
        return info

    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(rootfs, arcname=".", filter=entry)


# ------------------------------------------------------------------------ the debootstrap recipe


def _check_debootstrap() -> str:
    found = shutil.which("debootstrap") or shutil.which(
        "debootstrap", path="/usr/sbin:/sbin:/usr/local/sbin"
    )
    if not found:
        raise ImageBuildError("the python recipe needs debootstrap: apt-get install -y debootstrap")
    if os.geteuid() != 0:
        raise ImageBuildError("the python recipe runs debootstrap, which needs root: run as root")
    return found


def _debootstrap(debootstrap: str, rootfs: Path, mirror: str, logfile: Path, log: Log) -> None:
    log(f"debootstrap {SUITE} from {mirror} (about 40 s)")
    started = time.monotonic()
    argv = [
        debootstrap,
        "--variant=minbase",
        "--include=python3,python-is-python3,ca-certificates",
        SUITE,
        str(rootfs),
        mirror,
    ]
    env = {**host_environ(), "DEBIAN_FRONTEND": "noninteractive"}
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    with logfile.open("wb") as out:
        rc = subprocess.call(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    if rc != 0:
        lines = logfile.read_text(errors="replace").strip().splitlines()
        for line in lines[-15:]:
            log(f"  {line}")
        last = next((ln for ln in reversed(lines) if ln.strip()), "no output")
        raise ImageBuildError(f"debootstrap from {mirror} failed (exit {rc}): {last.strip()}")
    log(f"debootstrap done in {time.monotonic() - started:.0f} s")


def _empty_dir(path: Path, keep: Iterable[str] = ()) -> None:
    if not path.is_dir() or path.is_symlink():
        return
    kept = set(keep)
    for child in path.iterdir():
        if child.name in kept:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _strip_debian(rootfs: Path) -> None:
    """Drop what a kernel never needs: package caches and lists, docs, manuals, translations,
    logs, and the host's own name and resolver settings that debootstrap copied in."""
    for sub in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian"):
        _empty_dir(rootfs / sub)
    _empty_dir(rootfs / "usr/share/locale", keep=("locale.alias",))
    _empty_dir(rootfs / "var/lib/apt/lists", keep=("partial", "lock"))
    _empty_dir(rootfs / "var/cache/apt/archives", keep=("partial", "lock"))
    for pattern in ("var/cache/apt/*.bin", "var/cache/debconf/*-old", "var/lib/dpkg/*-old"):
        for path in rootfs.glob(pattern):
            path.unlink()
    _empty_dir(rootfs / "var/log", keep=("apt",))
    _empty_dir(rootfs / "var/log/apt")
    for name in ("etc/hostname", "etc/resolv.conf"):
        path = rootfs / name
        if path.exists() or path.is_symlink():
            path.unlink()
    # Keep later `apt-get install`s inside the kernel just as lean.
    nodoc = rootfs / "etc/dpkg/dpkg.cfg.d/shipyard-nodoc"
    nodoc.parent.mkdir(parents=True, exist_ok=True)
    nodoc.write_text(
        "path-exclude=/usr/share/doc/*\n"
        "path-include=/usr/share/doc/*/copyright\n"
        "path-exclude=/usr/share/man/*\n"
        "path-exclude=/usr/share/info/*\n"
        "path-exclude=/usr/share/locale/*\n"
        "path-include=/usr/share/locale/locale.alias\n"
        "path-exclude=/usr/share/lintian/*\n"
    )


def _add_work_user(rootfs: Path, *, shell: str) -> None:
    etc = rootfs / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    days = int(time.time() // 86400)
    lines = {
        "passwd": f"work:x:{WORK_UID}:{WORK_GID}:Shipyard user:/home/work:{shell}",
        "group": f"work:x:{WORK_GID}:",
        "shadow": f"work:*:{days}:0:99999:7:::",
        "gshadow": "work:!::",
    }
    for name, line in lines.items():
        path = etc / name
        if not path.exists():
            if name in ("shadow", "gshadow"):
                continue  # the fixture has no shadow files
            path.write_text("")
        text = path.read_text()
        if any(existing.split(":", 1)[0] == "work" for existing in text.splitlines()):
            continue
        if text and not text.endswith("\n"):
            text += "\n"
        path.write_text(text + line + "\n")
    home = rootfs / "home/work"
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(home, WORK_UID, WORK_GID)
    tmp = rootfs / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)


def _remove_workdir(workdir: Path, log: Log) -> None:
    """Remove the build directory, first unmounting anything a failed debootstrap left mounted
    inside it (removing files through such a mount would reach the host)."""
    prefix = str(workdir) + "/"
    mounts: list[str] = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
                if point.startswith(prefix):
                    mounts.append(point)
    except OSError:
        pass
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.call(["umount", "-l", point], stderr=subprocess.DEVNULL, env=host_environ())
    try:
        shutil.rmtree(workdir)
    except OSError as exc:
        log(f"warning: could not remove the build directory {workdir}: {exc}")


# ------------------------------------------------------------------------ the host-python recipe


def _busybox_path() -> str | None:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.isfile(candidate):
            return candidate
    return None


def _check_host_python() -> None:
    missing = []
    if not os.path.isfile(_HOST_PYTHON):
        missing.append(f"Debian's {_HOST_PYTHON}")
    if _busybox_path() is None:
        missing.append("busybox")
    for tool in ("dpkg", "ldd"):
        if shutil.which(tool) is None:
            missing.append(tool)
    if missing:
        raise ImageBuildError(
            f"the python-host recipe needs {', '.join(missing)}: {_APT_HINT_HOST}"
        )


def _dpkg_files(package: str) -> list[str] | None:
    proc = subprocess.run(
        ["dpkg", "-L", package], capture_output=True, text=True, check=False, env=host_environ()
    )
    if proc.returncode != 0:
        return None
    return [line for line in proc.stdout.splitlines() if line.startswith("/")]


def _ldd_closure(files: list[str]) -> set[str]:
    """The shared libraries (and the loader) that `files` link, transitively, as ldd reports."""
    proc = subprocess.run(
        ["ldd", *files], capture_output=True, text=True, check=False, env=host_environ()
    )
    libs: set[str] = set()
    for line in proc.stdout.splitlines():
        line = line.strip()
        if "=>" in line:
            target = line.split("=>", 1)[1].strip().split(" (", 1)[0].strip()
        elif line.startswith("/") and " (" in line:
            target = line.split(" (", 1)[0].strip()
        else:
            continue
        if target.startswith("/"):
            libs.add(target)
    return libs


class _Tree:
    """Copies host paths into `root` at the same place, recreating every symlink on the way (so
    a merged-/usr host gives a merged-/usr image) and whatever those symlinks point at."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: set[str] = set()

    def dest(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")

    def _resolve_parent(self, path: str) -> str:
        """`path` with its directory part resolved on the host, adding each symlinked directory
        met on the way to the image."""
        parts = Path(path).parts[1:]
        current = "/"
        for part in parts[:-1]:
            step = os.path.join(current, part)
            if os.path.islink(step):
                self.add(step)
                current = os.path.realpath(step)
            else:
                current = step
        return os.path.join(current, parts[-1]) if parts else "/"

    def add(self, path: str) -> None:
        real = self._resolve_parent(os.path.normpath(path))
        if real in self.done or real == "/":
            return
        self.done.add(real)
        try:
            st = os.lstat(real)
        except FileNotFoundError:
            return  # listed by dpkg but gone (diverted or removed): nothing to copy
        dest = self.dest(real)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(real):
            target = os.readlink(real)
            if not dest.is_symlink():
                dest.symlink_to(target)
            self.add(os.path.join(os.path.dirname(real), target))
        elif os.path.isdir(real):
            dest.mkdir(exist_ok=True)
            dest.chmod(st.st_mode & 0o7777)
        elif os.path.isfile(real):
            shutil.copy2(real, dest, follow_symlinks=False)

    def add_tree(self, path: str) -> None:
        self.add(path)
        real = os.path.realpath(path)
        for dirpath, dirnames, filenames in os.walk(real):
            for name in dirnames + filenames:
                self.add(os.path.join(dirpath, name))

    def link(self, path: str, target: str) -> None:
        """A symlink at `path` (host-resolved) unless the image has something there already."""
        dest = self.dest(self._resolve_parent(path))
        if dest.exists() or dest.is_symlink():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(target)


def _populate_from_host(rootfs: Path, log: Log) -> None:
    tree = _Tree(rootfs)
    rootfs.mkdir()
    # Top-level symlinks first (merged /usr: /bin -> usr/bin, /lib -> usr/lib, ...).
    for entry in sorted(os.listdir("/")):
        if os.path.islink("/" + entry) and entry in {
            "bin",
            "sbin",
            "lib",
            "lib32",
            "lib64",
            "libx32",
        }:
            tree.add("/" + entry)

    files: list[str] = []
    for package in _HOST_REQUIRED:
        listed = _dpkg_files(package)
        if listed is None:
            raise ImageBuildError(
                f"the python-host recipe needs the Debian package {package}: {_APT_HINT_HOST}"
            )
        files += listed
    for package in _HOST_OPTIONAL:
        listed = _dpkg_files(package)
        if listed is None:
            log(f"note: {package} is not installed here; the fixture goes without it")
            continue
        files += listed
    for path in files:
        if not path.startswith(_HOST_SKIP):
            tree.add(path)
    # Byte-code the host already compiled (valid: copies keep the sources' mtimes), so a kernel
    # does not recompile the standard library on every start as the unprivileged work user.
    for path in files:
        if path.endswith(".py"):
            directory, name = os.path.split(path)
            pyc = os.path.join(directory, "__pycache__", name[:-3] + ".cpython-311.pyc")
            if os.path.isfile(pyc):
                tree.add(pyc)

    # The CA bundle and hashed links are generated by update-ca-certificates, not shipped.
    for path in ("/etc/ssl/certs", "/etc/ssl/openssl.cnf", "/usr/lib/ssl"):
        if os.path.lexists(path):
            tree.add_tree(path)

    dynload = sorted(str(p) for p in Path("/usr/lib/python3.11/lib-dynload").glob("*.so"))
    busybox = _busybox_path()
    assert busybox is not None
    for lib in sorted(_ldd_closure([_HOST_PYTHON, busybox, *dynload])):
        tree.add(lib)

    tree.add(busybox)
    busybox_real = "/" + os.path.relpath(os.path.realpath(busybox), "/")
    tree.link("/usr/bin/python3", "python3.11")
    tree.link("/usr/bin/python", "python3")  # Backend.AI's kernels have `python` too
    applets = subprocess.run(
        [busybox, "--list-full"], capture_output=True, text=True, check=True, env=host_environ()
    ).stdout.split()
    for applet in applets:
        if "/" in applet:  # not the top-level /linuxrc
            tree.link("/" + applet, busybox_real)

    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    root_home = rootfs / "root"
    root_home.mkdir(exist_ok=True)
    root_home.chmod(0o700)
    for name in ("dev", "proc", "sys", "var/tmp", "usr/local/bin"):
        (rootfs / name).mkdir(parents=True, exist_ok=True)
    (rootfs / "var/tmp").chmod(0o1777)
