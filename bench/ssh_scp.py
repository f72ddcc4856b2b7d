"""scp of a large file through the relay, both ways (issue 12, "Done when").

    .venv/bin/python -m bench.ssh_scp [--mib 100]

Starts its own appliance and a session of the lab image (shipyard-test/python-lab:3.11, built
when missing), then times `shipyard scp` of `--mib` MiB of random bytes up and back down,
checks SHA-256 on both sides, and for comparison times `shipyard ssh -- cat FILE` (the same
bytes down with no sftp-server in the way). Each figure includes the command's start (key
fetch, ProxyCommand, ssh handshake), which the first line measures alone.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kernelimages import FIXTURE_LAB_IMAGE
from shipyard.testing import Appliance, running_appliance


def _timed(appliance: Appliance, what: str, mib: int, *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "shipyard", *args], env=appliance.env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=1800,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}): {done.stderr}")
    print(f"{what:<34} {mib:4} MiB in {elapsed:6.1f} s = {mib / elapsed:6.1f} MiB/s", flush=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=100)
    args = parser.parse_args()
    build = [sys.executable, "-m", "shipyard", "image", "build", "python-host-lab", "--if-missing"]
    subprocess.run(build, check=True)
    data = os.urandom(args.mib * 2**20)
    with tempfile.TemporaryDirectory(prefix="bench-scp-") as folder, running_appliance() as app:
        up, down = Path(folder) / "up.bin", Path(folder) / "down.bin"
        up.write_bytes(data)
        created = app.cli("session", "create", "-i", FIXTURE_LAB_IMAGE, "-n", "scp1")
        if created.returncode != 0:
            raise SystemExit(created.stderr)
        _timed(app, "shipyard ssh -- true (start only)", 0, "ssh", "scp1", "--", "true")
        _timed(app, "shipyard scp up", args.mib, "scp", "scp1", str(up), ":big.bin")
        summed = app.cli("ssh", "scp1", "--", "sha256sum", "big.bin").stdout.split()[:1]
        assert summed == [hashlib.sha256(data).hexdigest()], summed
        _timed(app, "shipyard scp down", args.mib, "scp", "scp1", ":big.bin", str(down))
        assert down.read_bytes() == data, "the file came back different"
        cat = ("ssh", "scp1", "--", "cat", "big.bin")
        _timed(app, "shipyard ssh -- cat (no sftp)", args.mib, *cat)
        print("byte-identical both ways")


if __name__ == "__main__":
    main()
