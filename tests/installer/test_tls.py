"""TLS from the answers file: `tls = "self-signed"` makes a certificate, writes it into the
control plane's configuration, and the control plane then serves HTTPS that a client trusting
that certificate (and only it) verifies."""

from __future__ import annotations

import ssl
from pathlib import Path

import anyio
import httpx
import pytest

from controlplane.config import ControlPlaneConfig
from controlplane.server import serve
from installer import units
from installer._service_user import TlsFiles
from installer._steps import Configs
from installer.errors import PlanError
from installer.plan import Plan
from shipyard.testing import free_port


def _write(files: dict[Path, tuple[bytes, int]]) -> None:
    for path, (data, mode) in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_self_signed_install_serves_verified_https(short_tmp: Path) -> None:
    plan = Plan(
        role="all-in-one",
        tls="self-signed",
        state_dir=short_tmp / "state",
        config_dir=short_tmp / "etc",
        vfolder_root=short_tmp / "state" / "vfolders",
        port=free_port(),
        service_user="",
    )
    assert plan.endpoint.startswith("https://127.0.0.1:")
    _write(TlsFiles(plan).files())
    _write(Configs(plan).files())
    cert, key = plan.tls_files or (Path(), Path())
    assert (cert.stat().st_mode & 0o777, key.stat().st_mode & 0o777) == (0o644, 0o600)
    config = ControlPlaneConfig.load(plan.config_dir / "controlplane.toml")
    assert (config.tls_certfile, config.tls_keyfile) == (str(cert), str(key))
    node = units.node_unit(plan).render()
    assert f"Environment=SSL_CERT_FILE={cert}\n" in node  # the local node trusts it

    trusting = ssl.create_default_context(cafile=str(cert))
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve, config, stop)
        async with httpx.AsyncClient(verify=trusting, timeout=5) as http:
            for _ in range(300):  # up to 30 s for the first start (migrations)
                try:
                    health = await http.get(f"{plan.endpoint}/health")
                    break
                except httpx.ConnectError:
                    await anyio.sleep(0.1)
            else:
                raise AssertionError("no HTTPS answer")
            assert health.status_code == 200
        async with httpx.AsyncClient(timeout=5) as untrusting:  # the system's CAs only
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get(f"{plan.endpoint}/health")
        async with httpx.AsyncClient(timeout=5) as plain:  # no clear-text fallback
            with pytest.raises(httpx.HTTPError):
                await plain.get(plan.endpoint.replace("https://", "http://") + "/health")
        stop.set()


def test_the_answers_say_what_tls_needs() -> None:
    with pytest.raises(PlanError, match="needs tls_certfile and tls_keyfile"):
        Plan(role="all-in-one", tls="provided")
    with pytest.raises(PlanError, match="expected one of 'none', 'self-signed' or 'provided'"):
        Plan.from_toml('role = "all-in-one"\ntls = "yes"\n')
    with pytest.raises(PlanError, match="are for tls = 'provided'"):
        Plan(role="all-in-one", tls_certfile="/a.pem", tls_keyfile="/b.pem")
    provided = Plan(role="all-in-one", tls="provided", tls_certfile="/c.pem", tls_keyfile="/k.pem")
    assert provided.tls_files == (Path("/c.pem"), Path("/k.pem"))
    assert provided.trusted_certificate is None  # a real CA's: nothing extra to trust
