"""The private CA of the control plane: one CA, a server certificate per master, a client one for control,
and the control service's key that signs what it publishes.

Layout of the PKI directory: `ca.pem`/`ca.key`, `<name>.pem`/`<name>.key` per issued name, and
`control-results.key`/`.pub`. A master's certificate names it (DNS SAN = the master's name), which the
control service verifies; the control client's certificate names `control`, which masters verify.

`write_identities` lays out, per service, only the material that service needs (its identity
directory: `pki/` and the operator registry), for deployments where each service mounts its own.
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

from control.signing import generate_signing_key
from masters.tls import TlsFiles

CONTROL_CLIENT = "control"
SINK = "sink"
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

    @property
    def results_key(self) -> Path:
        """The control service's signing key (private)."""
        return self.directory / "control-results.key"

    @property
    def results_public_key(self) -> Path:
        return self.directory / "control-results.pub"

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
    """Create what is missing (the CA, the control client, each master's certificate, the control
    service's signing key); returns it."""
    created = []
    if not pki.ca_cert.is_file():
        create_ca(pki)
        created.append("ca")
    for name, server in [(CONTROL_CLIENT, False), *((master, True) for master in masters)]:
        if not pki.cert(name).is_file():
            issue(pki, name, server=server)
            created.append(name)
    if not pki.results_key.is_file():
        generate_signing_key(pki.results_key, pki.results_public_key)
        created.append("control signing key")
    return created


def write_identities(pki: Pki, operators_file: Path, masters: list[str], out: Path) -> list[str]:
    """Each service's own material under `out/<service>/`, laid out as an identity directory: the
    control service (its client certificate, its signing key, the CA certificate, the operator
    registry), each master (its server certificate, the CA certificate, the registry) and the sink
    (the control service's public key). The CA key and operators' private keys go to none of them."""
    registry = operators_file.read_bytes() if operators_file.is_file() else b'{"operators": {}}\n'
    control = [pki.ca_cert, pki.cert(CONTROL_CLIENT), pki.key(CONTROL_CLIENT), pki.results_key]
    material = {
        CONTROL_CLIENT: ([*control, pki.results_public_key], True),
        SINK: ([pki.results_public_key], False),
        **{master: ([pki.ca_cert, pki.cert(master), pki.key(master)], True) for master in masters},
    }
    for service, (files, with_registry) in material.items():
        (out / service / "pki").mkdir(parents=True, exist_ok=True)
        for source in files:
            _copy(source, out / service / "pki" / source.name)
        if with_registry:
            (out / service / "operators.json").write_bytes(registry)
    return list(material)


def _copy(source: Path, target: Path) -> None:
    """A copy keeping a private key private (0600 before its bytes are written)."""
    mode = 0o600 if source.suffix == ".key" else 0o644
    target.touch(mode=mode, exist_ok=True)
    os.chmod(target, mode)
    target.write_bytes(source.read_bytes())
