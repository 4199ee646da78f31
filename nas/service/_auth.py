"""Bearer tokens with owners, and the service's settings.

Tokens come from ``NAS_API_TOKENS`` (comma-separated ``token:owner`` or ``token:owner:admin``
entries) and ``NAS_API_TOKEN`` (one admin token, owner ``admin``). A token sees and changes only
its owner's jobs; an admin token sees every job. ``--insecure-local`` (loopback hosts only)
accepts requests without a token as owner ``local``, who sees every job (a single-user machine
whose jobs the CLI made too); a token that is sent must still be valid.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LOCAL", "Principal", "ServiceSettings", "check_loopback", "is_loopback", "parse_tokens"]


@dataclass(frozen=True)
class Principal:
    """Who a request acts for."""

    owner: str
    admin: bool = False

    def may_see(self, job_owner: str) -> bool:
        return self.admin or job_owner == self.owner


LOCAL = Principal("local", admin=True)
"""The principal of token-less requests under ``--insecure-local``."""


def parse_tokens(env: Mapping[str, str]) -> dict[str, Principal]:
    """Token -> principal from ``NAS_API_TOKENS`` and ``NAS_API_TOKEN`` in `env`.

    Raises:
        ValueError: a malformed entry (named, with the expected form; the token itself is not echoed).
    """
    out: dict[str, Principal] = {}
    raw = env.get("NAS_API_TOKENS", "")
    for i, entry in enumerate(e.strip() for e in raw.split(",")):
        if not entry:
            continue
        parts = entry.split(":")
        where = f"NAS_API_TOKENS entry {i + 1}"
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ValueError(f"{where} is malformed; expected token:owner or token:owner:admin.")
        if len(parts) == 3 and parts[2] != "admin":
            raise ValueError(f"{where} ends with {parts[2]!r}; the only allowed flag is 'admin'.")
        if parts[0] in out:
            raise ValueError(f"{where} repeats a token of an earlier entry.")
        out[parts[0]] = Principal(parts[1], admin=len(parts) == 3)
    single = env.get("NAS_API_TOKEN", "").strip()
    if single:
        if single in out and out[single] != Principal("admin", True):
            raise ValueError("NAS_API_TOKEN is also an NAS_API_TOKENS entry with another owner.")
        out[single] = Principal("admin", admin=True)
    return out


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (or a name resolving only to them)."""
    try:
        addrs = {ipaddress.ip_address(host.strip("[]"))}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
            addrs = {ipaddress.ip_address(str(ai[4][0]).split("%")[0]) for ai in infos}
        except (OSError, ValueError):
            addrs = set()
    return bool(addrs) and all(a.is_loopback for a in addrs)


def check_loopback(host: str) -> None:
    """Raise ValueError unless `host` is a loopback address (or a name resolving only to them)."""
    if not is_loopback(host):
        raise ValueError(
            f"--insecure-local serves without tokens, so it only binds a loopback address "
            f"(127.0.0.1, ::1, localhost), not {host!r}; set NAS_API_TOKEN (or NAS_API_TOKENS) "
            "to serve on other addresses."
        )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a whole number >= 1 (got {raw!r}).")
    return value


@dataclass(frozen=True)
class ServiceSettings:
    """What `create_app` needs.

    Attributes:
        tokens: token -> principal (see `parse_tokens`).
        insecure_local: accept token-less requests as owner ``local`` (bind loopback only).
        home: ``$NAS_HOME`` (exports and job logs go under it).
        database_url: the service database (None: ``NAS_DATABASE_URL`` / ``$NAS_HOME/nas.db``);
            job runners get it through their environment.
        ray_address: a Ray cluster's dashboard (``http://HEAD:8265``, ``NAS_RAY_ADDRESS``):
            submitted search jobs run there through the Ray Jobs API (None: local runners).
        max_runners: local job runners at once (``NAS_MAX_RUNNERS``; default: the CPU count);
            further jobs wait, pending, and start in submission order as runners finish.
    """

    tokens: Mapping[str, Principal] = field(default_factory=dict)
    insecure_local: bool = False
    home: Path = field(default_factory=lambda: Path(os.environ.get("NAS_HOME", ".nas")))
    database_url: str | None = None
    ray_address: str | None = None
    max_runners: int = field(default_factory=lambda: os.cpu_count() or 1)

    @classmethod
    def from_env(
        cls,
        *,
        insecure_local: bool = False,
        ray_address: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ServiceSettings:
        """Settings from `env` (default: the process environment); `ray_address` overrides
        ``NAS_RAY_ADDRESS``."""
        e = os.environ if env is None else env
        return cls(
            tokens=parse_tokens(e),
            insecure_local=insecure_local,
            home=Path(e.get("NAS_HOME", ".nas")),
            database_url=e.get("NAS_DATABASE_URL") or None,
            ray_address=ray_address or e.get("NAS_RAY_ADDRESS") or None,
            max_runners=_positive_int(e, "NAS_MAX_RUNNERS", os.cpu_count() or 1),
        )

    def check(self) -> None:
        """Raise ValueError when nobody could use the service, or its Ray cluster (`ray_address`)
        could not reach its database."""
        if self.max_runners < 1:
            raise ValueError(f"max_runners must be >= 1 (got {self.max_runners}).")
        if not self.tokens and not self.insecure_local:
            raise ValueError(
                "No API tokens: set NAS_API_TOKEN (one admin token) or NAS_API_TOKENS "
                "(token:owner[:admin],...), or serve on a loopback address with --insecure-local."
            )
        if self.ray_address:
            from nas.service._ray_jobs import cluster_database_url

            cluster_database_url(self.database_url, self.ray_address)

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal of `token` (None: no or an unknown token; token-less under insecure_local
        is `LOCAL`). Compares in constant time against every token."""
        if not token:
            return LOCAL if self.insecure_local else None
        found = None
        for known, who in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = who
        return found
