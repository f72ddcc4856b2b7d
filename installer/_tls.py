"""TLS for the control plane: signed requests can be replayed and secret keys are shown once,
so off localhost the API must only be spoken over TLS. The installer either uses a certificate
the operator provides or makes a self-signed one (answers: `tls`, `tls_certfile`,
`tls_keyfile`); clients on other machines then trust that certificate file (SSL_CERT_FILE)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = timedelta(days=825)  # the longest most clients accept for a server certificate


def names_for(bind_host: str) -> list[str]:
    """The names a self-signed certificate covers: the bound address (all of this machine's
    when it binds every interface), its host names and loopback."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()]
    if bind_host in ("0.0.0.0", "::"):
        with contextlib.suppress(OSError):  # a host name that does not resolve: loopback only
            names += [str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)]
    else:
        names.append(bind_host)
    return list(dict.fromkeys(n for n in names if n))


def self_signed(names: list[str]) -> tuple[bytes, bytes]:
    """A self-signed server certificate for `names` and its private key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def check_pair(certfile: Path, keyfile: Path) -> str:
    """'' when the files hold a certificate and its private key; else what is wrong."""
    try:
        cert = x509.load_pem_x509_certificate(certfile.read_bytes())
        key = serialization.load_pem_private_key(keyfile.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return f"cannot use {certfile} and {keyfile}: {exc}"
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return f"the key in {keyfile} is not the one of the certificate in {certfile}"
    return ""
