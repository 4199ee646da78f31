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

__all__ = ["LOCAL", "Principal", "ServiceSettings", "check_loopback", "parse_tokens"]


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


def check_loopback(host: str) -> None:
    """Raise ValueError unless `host` is a loopback address (or a name resolving only to them)."""
    try:
        addrs = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
            addrs = {ipaddress.ip_address(str(ai[4][0]).split("%")[0]) for ai in infos}
        except (OSError, ValueError):
            addrs = set()
    if not addrs or not all(a.is_loopback for a in addrs):
        raise ValueError(
            f"--insecure-local serves without tokens, so it only binds a loopback address "
            f"(127.0.0.1, ::1, localhost), not {host!r}; set NAS_API_TOKEN (or NAS_API_TOKENS) "
            "to serve on other addresses."
        )


@dataclass(frozen=True)
class ServiceSettings:
    """What `create_app` needs.

    Attributes:
        tokens: token -> principal (see `parse_tokens`).
        insecure_local: accept token-less requests as owner ``local`` (bind loopback only).
        home: ``$NAS_HOME`` (exports and job logs go under it).
        database_url: the service database (None: ``NAS_DATABASE_URL`` / ``$NAS_HOME/nas.db``);
            job runners get it through their environment.
    """

    tokens: Mapping[str, Principal] = field(default_factory=dict)
    insecure_local: bool = False
    home: Path = field(default_factory=lambda: Path(os.environ.get("NAS_HOME", ".nas")))
    database_url: str | None = None

    @classmethod
    def from_env(
        cls, *, insecure_local: bool = False, env: Mapping[str, str] | None = None
    ) -> ServiceSettings:
        e = os.environ if env is None else env
        return cls(
            tokens=parse_tokens(e),
            insecure_local=insecure_local,
            home=Path(e.get("NAS_HOME", ".nas")),
            database_url=e.get("NAS_DATABASE_URL") or None,
        )

    def check(self) -> None:
        """Raise ValueError when nobody could use the service."""
        if not self.tokens and not self.insecure_local:
            raise ValueError(
                "No API tokens: set NAS_API_TOKEN (one admin token) or NAS_API_TOKENS "
                "(token:owner[:admin],...), or serve on a loopback address with --insecure-local."
            )

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
