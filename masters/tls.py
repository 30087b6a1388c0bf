"""TLS for the master transport: both ends present certificates from the private CA (mutual TLS)."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpyc.utils.authenticators import AuthenticationError

from masters import metrics


@dataclass(frozen=True)
class TlsFiles:
    """One party's certificate and key, and the CA certificate it trusts (PEM files)."""

    cert: Path
    key: Path
    ca: Path

    def require(self) -> None:
        for path in (self.ca, self.cert, self.key):
            if not path.is_file():
                raise FileNotFoundError(f"missing {path}: run `omstream ops bootstrap` first")


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


class MutualTlsAuthenticator:
    """rpyc authenticator: only a client with a certificate from our CA gets past the handshake."""

    def __init__(self, context: ssl.SSLContext, handshake_timeout: float = 5.0) -> None:
        self._context = context
        self._handshake_timeout = handshake_timeout

    def __call__(self, sock: socket.socket) -> tuple[ssl.SSLSocket, Any]:
        no_delay(sock)
        sock.settimeout(self._handshake_timeout)
        try:
            tls = self._context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as error:
            metrics.REFUSED.inc()
            raise AuthenticationError(f"TLS handshake refused: {error}") from error
        tls.settimeout(None)
        return tls, tls.getpeercert()
