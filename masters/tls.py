"""TLS for the master transport: both ends present certificates from the private CA (mutual TLS), and
a master talks only to the control service's identity, not to whatever else the CA has signed."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rpyc.utils.authenticators import AuthenticationError

from masters import metrics
from masters.keys import MissingKeyFile


@dataclass(frozen=True)
class TlsFiles:
    """One party's certificate and key, and the CA certificate it trusts (PEM files)."""

    cert: Path
    key: Path
    ca: Path

    def require(self) -> None:
        for path in (self.ca, self.cert, self.key):
            if not path.is_file():
                raise MissingKeyFile(f"missing {path}: run `omstream ops bootstrap` first")


def _context(purpose: int) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def server_context(files: TlsFiles) -> ssl.SSLContext:
    files.require()
    context = _context(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    context.load_verify_locations(files.ca)
    return context


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """Verifies the master's certificate against the CA and its name (`check_hostname`)."""
    files.require()
    context = _context(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = True
    context.load_cert_chain(files.cert, files.key)
    context.load_verify_locations(files.ca)
    return context


def no_delay(sock: socket.socket) -> None:
    # Without it Nagle's algorithm holds the small frames of a large result and transfers crawl.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def client_identity(der: bytes) -> str:
    """The common name of a client certificate, or "" when the certificate may not act as a client
    (no `clientAuth` extended key usage: a server's certificate, say)."""
    cert = x509.load_der_x509_certificate(der)
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return ""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages or len(names) != 1:
        return ""
    return str(names[0].value)


class MutualTlsAuthenticator:
    """rpyc authenticator: only the client whose certificate (from our CA) names `client` gets past."""

    def __init__(self, context: ssl.SSLContext, client: str, handshake_timeout: float = 5.0) -> None:
        self._context = context
        self._client = client
        self._handshake_timeout = handshake_timeout

    def __call__(self, sock: socket.socket) -> tuple[ssl.SSLSocket, Any]:
        no_delay(sock)
        sock.settimeout(self._handshake_timeout)
        try:
            tls = self._context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as error:
            metrics.REFUSED.labels("handshake").inc()
            raise AuthenticationError(f"TLS handshake refused: {error}") from error
        peer = tls.getpeercert(binary_form=True)
        if peer is None or client_identity(peer) != self._client:
            metrics.REFUSED.labels("identity").inc()
            tls.close()
            raise AuthenticationError(f"the client is not {self._client!r}")
        tls.settimeout(None)
        return tls, tls.getpeercert()
