"""The control service's own Ed25519 signature on what it publishes, so no one else can write it.

Results (`ops.results`) and the replay memory (`ops.admitted`) carry the signature in a Kafka header
over the exact bytes of the message, prefixed by what the message is for: a record signed for one
topic is no record of the other. The private key is the control service's alone; the sink, operators
and other control replicas verify with the public half.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from masters.keys import (
    MissingKeyFile,
    parse_public_key,
    public_key_text,
    read_private_key,
    write_private_key,
)

SIGNATURE_HEADER = "omstream-signature"

# As a Kafka client hands them over: a header's value may be NULL (None), which Kafka allows.
Headers = Sequence[tuple[str, bytes | None]]


class Purpose(Enum):
    RESULT = b"omstream ops.results\n"
    ADMITTED = b"omstream ops.admitted\n"


def generate_signing_key(private: Path, public: Path) -> None:
    key = Ed25519PrivateKey.generate()
    write_private_key(private, key)
    public.write_text(public_key_text(key.public_key()) + "\n")


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    if not path.is_file():
        raise MissingKeyFile(f"no control signing key at {path}: run `omstream ops bootstrap`")
    return read_private_key(path)


def load_verify_key(path: Path) -> Ed25519PublicKey:
    if not path.is_file():
        raise MissingKeyFile(f"no control public key at {path}: run `omstream ops bootstrap`")
    return parse_public_key(path.read_text().strip())


def signed_headers(key: Ed25519PrivateKey, purpose: Purpose, value: bytes) -> list[tuple[str, bytes]]:
    return [(SIGNATURE_HEADER, base64.b64encode(key.sign(purpose.value + value)))]


def is_signed(key: Ed25519PublicKey, purpose: Purpose, value: bytes, headers: Headers) -> bool:
    """Whether exactly one signature header is there and verifies over `value` for `purpose`; any
    other header, of any name or value (NULL included), is no signature."""
    signatures = [header for name, header in headers if name == SIGNATURE_HEADER]
    if len(signatures) != 1 or not isinstance(signatures[0], bytes):
        return False
    try:
        key.verify(base64.b64decode(signatures[0], validate=True), purpose.value + value)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
