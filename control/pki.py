"""The private CA of the control plane: one CA, a server certificate per master, a client one for control.

Layout of the PKI directory: `ca.pem`/`ca.key`, and `<name>.pem`/`<name>.key` per issued name. A
master's certificate names it (DNS SAN = the master's name), which the control service verifies.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from masters.tls import TlsFiles

CONTROL_CLIENT = "control"
_VALID_FOR = datetime.timedelta(days=825)


@dataclass(frozen=True)
class Pki:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def files(self, name: str) -> TlsFiles:
        """What `name` needs for its side of mutual TLS."""
        return TlsFiles(cert=self.cert(name), key=self.key(name), ca=self.ca_cert)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.touch(mode=0o600, exist_ok=True)
    os.chmod(path, 0o600)
    path.write_bytes(pem)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OMStream"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _load_ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(pki.key("ca").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def create_ca(pki: Pki) -> None:
    # A unique name per CA: TLS stacks find the issuer by name, so two CAs with the same name (an old
    # and a rotated one) would be confused with each other.
    common_name = f"OMStream control-plane CA {secrets.token_hex(4)}"
    pki.directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(pki.key("ca"), key)
    pki.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def issue(pki: Pki, name: str, *, server: bool) -> None:
    """A certificate for `name` signed by the CA: a server's names itself, a client's may only connect."""
    ca_cert, ca_key = _load_ca(pki)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(name)]), critical=False)
    _write_key(pki.key(name), key)
    pki.cert(name).write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def ensure_pki(pki: Pki, masters: list[str]) -> list[str]:
    """Create what is missing (the CA, the control client, each master's certificate); returns it."""
    created = []
    if not pki.ca_cert.is_file():
        create_ca(pki)
        created.append("ca")
    for name, server in [(CONTROL_CLIENT, False), *((master, True) for master in masters)]:
        if not pki.cert(name).is_file():
            issue(pki, name, server=server)
            created.append(name)
    return created
