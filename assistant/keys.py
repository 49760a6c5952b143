"""API keys of the HTTP API: stored as SHA-256 hashes with a role, checked in constant time.

    token, line = new_key("reader")          # give `token` to the client once; store `line`
    keys = load_keys(Settings(api_keys=line))
    assert role_of(token, keys) == "reader"

A key is `nhsa-` and 32 random bytes (URL-safe base64); only its SHA-256 is kept, in
ASSISTANT_API_KEYS ("hash:role,hash:role") or in the file ASSISTANT_API_KEYS_FILE (one "hash:role" a line,
`#` comments). `reader` may ask, search chunks and read the targets; `admin` may also change the documents
and run evaluations.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from assistant.config import Settings
from assistant.errors import ConfigError

ROLES = ("reader", "admin")  # each role may do what the roles before it may
PREFIX = "nhsa-"
_HASH = re.compile(r"^[0-9a-f]{64}$")
HOW_TO_ADD = (
    "create one with `nhs-assistant keys add --role admin` and put the line it prints in ASSISTANT_API_KEYS "
    "(or in the file named by ASSISTANT_API_KEYS_FILE)"
)


@dataclass(frozen=True)
class ApiKey:
    """One stored key: the SHA-256 (hex) of the token and what it may do."""

    sha256: str
    role: str


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token, as stored.

    >>> hash_token("abc")[:16]
    'ba7816bf8f01cfea'
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_key(role: str) -> tuple[str, str]:
    """A fresh token for `role`, and the "hash:role" line that stores it."""
    if role not in ROLES:
        raise ConfigError(f"role ({role!r}) must be one of {', '.join(ROLES)}.")
    token = PREFIX + secrets.token_urlsafe(32)
    return token, f"{hash_token(token)}:{role}"


def parse_keys(text: str, where: str) -> list[ApiKey]:
    """Keys from "hash:role" entries separated by commas or lines; raise ConfigError naming a bad one.

    >>> parse_keys("# ops team\\n" + "a" * 64 + ":admin", "keys.txt")[0].role
    'admin'
    """
    keys = []
    entries = [e.split("#", 1)[0].strip() for line in text.splitlines() for e in line.split(",")]
    for number, entry in enumerate((e for e in entries if e), start=1):
        digest, _, role = entry.partition(":")
        digest, role = digest.strip().lower(), role.strip()
        if not _HASH.match(digest) or role not in ROLES:
            # The entry itself is not echoed: it may be a token pasted where its hash belongs.
            raise ConfigError(
                f"{where}: key {number} is not 'sha256hex:role' with role {' or '.join(ROLES)}; {HOW_TO_ADD}."
            )
        keys.append(ApiKey(digest, role))
    return keys


def load_keys(settings: Settings) -> list[ApiKey]:
    """Every key that ASSISTANT_API_KEYS and ASSISTANT_API_KEYS_FILE hold (empty: none configured)."""
    keys = parse_keys(settings.api_keys, "ASSISTANT_API_KEYS")
    path = settings.api_keys_file
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(
                f"ASSISTANT_API_KEYS_FILE ({path}) cannot be read ({type(err).__name__}); "
                "point it at a text file of 'sha256hex:role' lines."
            ) from None
        keys += parse_keys(text, str(path))
    return keys


def role_of(token: str, keys: list[ApiKey]) -> str | None:
    """The role of the key that `token` is, or None; every stored hash is compared in constant time."""
    digest = hash_token(token)
    role = None
    for key in keys:  # no early exit: the time taken does not say which key matched
        if hmac.compare_digest(digest, key.sha256):
            role = key.role
    return role


def allows(role: str, needed: str) -> bool:
    """Whether `role` may do what `needed` may.

    >>> allows("admin", "reader"), allows("reader", "admin")
    (True, False)
    """
    return ROLES.index(role) >= ROLES.index(needed)
