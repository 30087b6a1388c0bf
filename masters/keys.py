"""Operator keys (Ed25519) and the registry of their public halves that the control service and the
masters trust.

The registry is a JSON file `{"operators": {"<name>": "<base64 raw public key>"}}`; private keys stay
with their operators (`<keys dir>/<name>.key`, PKCS#8 PEM, mode 0600).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from masters.protocol import Command, CommandRejected


class MissingKeyFile(FileNotFoundError):
    """A key, certificate or registry that `omstream ops keygen` or `ops bootstrap` makes is not there."""


class KeyExists(FileExistsError):
    """An operator's key is there already: replacing it takes `--rotate`."""


class BadKey(ValueError):
    """A key, or the registry of keys, that does not parse."""


def generate_key(keys_dir: Path, registry: Path, operator: str, *, replace: bool = False) -> Path:
    """A new key pair for `operator`: the private key under `keys_dir`, the public one registered."""
    path = keys_dir / f"{operator}.key"
    if path.exists() and not replace:
        raise KeyExists(f"{path} exists; pass --rotate to replace the key of {operator!r}")
    key = Ed25519PrivateKey.generate()
    write_private_key(path, key)
    register(registry, operator, key.public_key())
    return path


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """PKCS#8 PEM, readable by its owner only (mode 0600 before a byte of the key is written)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    os.chmod(path, 0o600)
    path.write_bytes(pem)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BadKey(f"{path} is not an Ed25519 private key")
    return key


def public_key_text(key: Ed25519PublicKey) -> str:
    """The raw public key in base64: how the registry (and `ops register`) writes it."""
    return base64.b64encode(
        key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except ValueError as error:  # binascii.Error is one
        raise BadKey(f"not a base64 Ed25519 public key: {text[:60]!r}") from error


def register(registry: Path, operator: str, public_key: Ed25519PublicKey) -> None:
    operators = load_registry(registry) if registry.exists() else {}
    operators[operator] = public_key
    raw = {name: public_key_text(key) for name, key in sorted(operators.items())}
    registry.parent.mkdir(parents=True, exist_ok=True)
    registry.write_text(json.dumps({"operators": raw}, indent=2) + "\n")


def load_registry(registry: Path) -> dict[str, Ed25519PublicKey]:
    try:
        operators = json.loads(registry.read_text())["operators"]
        return {name: parse_public_key(value) for name, value in operators.items()}
    except FileNotFoundError:
        raise MissingKeyFile(f"no operator registry at {registry}: run `omstream ops keygen`") from None
    except (KeyError, TypeError, ValueError) as error:
        raise BadKey(f"operator registry {registry} is invalid: {error}") from error


def load_private_key(keys_dir: Path, operator: str) -> Ed25519PrivateKey:
    path = keys_dir / f"{operator}.key"
    if not path.is_file():
        raise MissingKeyFile(f"no key for operator {operator!r} at {path}: run `omstream ops keygen`")
    return read_private_key(path)


def sign(command: Command, key: Ed25519PrivateKey) -> Command:
    signature = base64.b64encode(key.sign(command.canonical())).decode()
    return command.model_copy(update={"signature": signature})


def verify(command: Command, operators: dict[str, Ed25519PublicKey]) -> None:
    if not command.signature:
        raise CommandRejected("unsigned", "the command carries no signature")
    public_key = operators.get(command.operator)
    if public_key is None:
        raise CommandRejected("unknown_operator", f"operator {command.operator!r} is not registered")
    try:
        public_key.verify(base64.b64decode(command.signature, validate=True), command.canonical())
    except (InvalidSignature, ValueError):
        raise CommandRejected("bad_signature", "the signature does not match the command") from None
