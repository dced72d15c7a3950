"""Bearer-token authentication: optional on loopback, required on any other interface.

The token comes from a file (``--token-file``, first line) or the ``RADSEARCH_TOKEN`` environment
variable — never from the command line, where ``ps`` would show it. Comparison is constant-time.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from radsearch.errors import ConfigError

TOKEN_ENV = "RADSEARCH_TOKEN"
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_token(host: str, token_file: str | os.PathLike | None = None) -> str | None:
    """The token in force, or None (only allowed on loopback). Raises ConfigError otherwise."""
    token = None
    if token_file is not None:
        path = Path(token_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the token file ({exc.strerror}).") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise ConfigError(f"{path}: the token file is empty; put one token on its first line.")
    elif os.environ.get(TOKEN_ENV, "").strip():
        token = os.environ[TOKEN_ENV].strip()
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the bearer token has {len(token)} characters; use at least "
                          f"{MIN_TOKEN_CHARS} (e.g. `python -c 'import secrets; "
                          "print(secrets.token_urlsafe(32))'`).")
    if token is None and not is_loopback(host):
        raise ConfigError(f"--host {host} is reachable from other machines: set a bearer token "
                          f"with --token-file FILE or the {TOKEN_ENV} environment variable.")
    return token


def authorised(header: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header carries the token (always true without a token)."""
    if token is None:
        return True
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                              token.encode())
