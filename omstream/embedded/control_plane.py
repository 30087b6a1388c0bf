"""The embedded control plane: IDCs bj and sh of two masters each (masterless Salt on this machine) and the
control service that knows them, with the certificates, the demo operator's key and its policy."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from control.dispatch import MasterAddress
from control.pki import Pki, ensure_pki
from masters.keys import generate_key
from omstream.embedded.stack import free_port, omstream_service, started, state_path, wait_for_port
from omstream.embedded.supervisor import Service
from omstream.settings import Settings

DEMO_OPERATOR = "demo"  # an admin on everything: embedded mode only
# The embedded control plane: two IDCs of two masters each, all on this machine.
EMBEDDED_MASTERS = {"bj": ["bj-1", "bj-2"], "sh": ["sh-1", "sh-2"]}
# The embedded control service's policy (unless OMSTREAM_POLICY_FILE names another): the demo operator
# may do anything. The packaged default policy grants no operator anything.
DEMO_POLICY = f"""# written by `omstream up`/`demo` for the embedded stack only
roles:
  admin: {{modules: ["*"], idcs: ["*"], targets: ["*"]}}
operators:
  {DEMO_OPERATOR}: [admin]
"""


def master_names(masters: dict[str, list[str]]) -> list[str]:
    """Certificate names of the configured masters."""
    return [MasterAddress.parse(address).name for group in masters.values() for address in group]


def configured_masters(settings: Settings) -> list[str]:
    if settings.masters:
        return master_names(settings.masters)
    return [name for names in EMBEDDED_MASTERS.values() for name in names]


def bootstrap_pki(settings: Settings) -> list[str]:
    """What a fresh control plane needs: the CA, certificates and the control service's signing key."""
    return ensure_pki(Pki(settings.pki_dir), configured_masters(settings))


def bootstrap_embedded(settings: Settings) -> list[str]:
    """The embedded control plane's: the PKI, and the demo operator's key and policy."""
    created = bootstrap_pki(settings)
    if not (settings.keys_dir / f"{DEMO_OPERATOR}.key").exists():
        generate_key(settings.keys_dir, settings.operators_file, DEMO_OPERATOR)
        created.append(f"operator key {DEMO_OPERATOR}")
    return created


@dataclass(frozen=True)
class ControlPlane:
    """The embedded control plane's services: masters (with the port each listens on), then control."""

    masters: list[tuple[Service, int]]
    control: Service


def control_plane_services(settings: Settings, bootstrap: str) -> ControlPlane:
    """Two masters per IDC (masterless Salt here) and the control service that knows them.

    Certificates and the demo operator's key are created on first run under the state directory.
    """
    bootstrap_embedded(settings)
    if settings.policy_file is None:
        policy = state_path(settings, "policy.yaml")
        policy.write_text(DEMO_POLICY)
        settings = settings.model_copy(update={"policy_file": policy})
    masters: list[tuple[Service, int]] = []
    addresses: dict[str, list[str]] = {}
    for idc, names in EMBEDDED_MASTERS.items():
        for name in names:
            port = free_port()
            options = ("--idc", idc, "--name", name, "--port", str(port))
            masters.append((omstream_service(settings, bootstrap, "master", name, *options), port))
            addresses.setdefault(idc, []).append(f"{name}@{settings.master_host}:{port}")
    control_settings = settings.model_copy(update={"masters": addresses})
    return ControlPlane(masters, omstream_service(control_settings, bootstrap, "control", "control"))


def wait_for_masters(
    settings: Settings, plane: ControlPlane, processes: Sequence[subprocess.Popen[bytes]]
) -> None:
    """Until every master listens (they start in parallel); the control service connects to them."""
    for process, (_, port) in zip(processes, plane.masters, strict=True):
        wait_for_port(process, settings.master_host, port)


@contextlib.contextmanager
def control_plane(settings: Settings, bootstrap: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The embedded control plane (`control_plane_services`) as child processes, for the block."""
    plane = control_plane_services(settings, bootstrap)
    with contextlib.ExitStack() as stack:
        processes = [stack.enter_context(started(service)) for service, _ in plane.masters]
        wait_for_masters(settings, plane, processes)
        processes.append(stack.enter_context(started(plane.control)))
        yield processes
