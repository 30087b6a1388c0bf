"""The RBAC policy file: roles grant modules x IDCs x target patterns; operators hold roles.

A target pattern allows a command's target only when every host the target can match is provably
among the hosts the pattern matches: a literal host (no `*`, `?`, `[`) is allowed by any pattern
that matches it; a glob target (`web*`, `web-?1`, `*`) only by a pattern `P*` whose literal prefix P
begins the target's literal prefix (what precedes its first wildcard), or by `*`; a grain target
(`G@role:web`) only by that same expression or `*`; a list by patterns allowing each of its hosts.
Anything else, a glob target against a pattern such as `web-??` or `[!v]*`, is `forbidden_target`.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from masters import modules
from masters.protocol import Command, CommandRejected, first_error

DEFAULT_POLICY = Path(__file__).parent / "policy.yaml"


class PolicyError(ValueError):
    """A policy file that is missing, not YAML, or not a valid policy."""


class Role(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modules: list[str] = Field(min_length=1)
    idcs: list[str] = Field(min_length=1)
    targets: list[str] = Field(min_length=1)

    def allows_module(self, module: str) -> bool:
        return any(fnmatchcase(module, pattern) for pattern in self.modules)

    def allows_idc(self, idc: str) -> bool:
        return any(fnmatchcase(idc, pattern) for pattern in self.idcs)

    def allows_target(self, target: str | list[str]) -> bool:
        hosts = target if isinstance(target, list) else [target]
        return all(any(contains(pattern, host) for pattern in self.targets) for host in hosts)


_WILDCARDS = re.compile(r"[*?\[]")


def _literal_prefix(glob: str) -> str:
    """What every name a glob matches begins with: its characters before the first wildcard."""
    wildcard = _WILDCARDS.search(glob)
    return glob if wildcard is None else glob[: wildcard.start()]


def contains(pattern: str, target: str) -> bool:
    """Whether every host `target` (a host, a glob or a `G@grain:value` expression) can match is
    matched by `pattern`; False whenever that cannot be shown."""
    if pattern == "*":
        return True
    if target.startswith("G@") or pattern.startswith("G@"):
        return target == pattern
    if _literal_prefix(target) == target:  # one host
        return fnmatchcase(target, pattern)
    prefix = pattern.removesuffix("*")
    is_prefix_glob = pattern.endswith("*") and _literal_prefix(prefix) == prefix
    return is_prefix_glob and _literal_prefix(target).startswith(prefix)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: dict[str, Role]
    operators: dict[str, list[str]]

    @model_validator(mode="after")
    def _references_resolve(self) -> Policy:
        for operator, role_names in self.operators.items():
            for role_name in role_names:
                if role_name not in self.roles:
                    raise ValueError(f"operator {operator!r} has unknown role {role_name!r}")
        known = set(modules.available())
        for name, role in self.roles.items():
            for pattern in role.modules:
                if not any(fnmatchcase(module, pattern) for module in known):
                    raise ValueError(f"role {name!r} names module {pattern!r}, which matches no module")
        return self

    def check(self, command: Command) -> None:
        """Raises CommandRejected unless one of the operator's roles allows module, each IDC and target."""
        roles = [self.roles[name] for name in self.operators.get(command.operator, [])]
        with_module = [role for role in roles if role.allows_module(command.module)]
        if not with_module:
            raise CommandRejected("forbidden_module", f"{command.operator} may not run {command.module}")
        for idc in command.idc:
            in_idc = [role for role in with_module if role.allows_idc(idc)]
            if not in_idc:
                raise CommandRejected(
                    "forbidden_idc", f"{command.operator} may not run {command.module} in {idc}"
                )
            if not any(role.allows_target(command.target) for role in in_idc):
                raise CommandRejected(
                    "forbidden_target", f"{command.operator} may not target {command.target} in {idc}"
                )


def load_policy(path: Path) -> Policy:
    """The policy at `path`, validated; any problem is one clear line naming the file."""
    try:
        return Policy.model_validate(yaml.safe_load(path.read_text()))
    except FileNotFoundError:
        raise PolicyError(f"no policy file at {path}") from None
    except yaml.YAMLError as error:
        raise PolicyError(f"policy {path}: not YAML: {str(error).splitlines()[0]}") from error
    except ValidationError as error:
        raise PolicyError(f"policy {path}: {first_error(error)}") from error
