"""Strict reading of environment variables: a malformed value stops start-up with
a message that names the variable, instead of silently becoming a default."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    """Return the variable's value, or ``default`` when unset."""
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    """Return a boolean variable; only true/false/yes/no/on/off/1/0 are accepted."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (got {raw!r}).")


def env_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Return an integer variable within ``[minimum, maximum]``."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number (got {raw!r}).") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise ImproperlyConfigured(f"{name} must be at least {minimum}{upper} (got {value}).")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """Return a comma-separated list variable, blanks removed."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_json_object(name: str, default: dict[str, str]) -> dict[str, str]:
    """Return a JSON object of non-empty strings (e.g. notice kind -> template code)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a JSON object (got {raw!r}).") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
    ):
        raise ImproperlyConfigured(f"{name} must map names to non-empty strings (got {raw!r}).")
    return value


def env_url(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    """Return a URL variable whose scheme is one of ``schemes``."""
    raw = os.environ.get(name, default).strip()
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ImproperlyConfigured(f"{name} must start with one of {allowed} (got {raw!r}).")
    return raw


def secret_key(var_dir: Path, *, debug: bool) -> str:
    """Return DJANGO_SECRET_KEY, or a per-checkout random key kept in ``var_dir``.

    Production must set the variable: without DEBUG a missing key is an error,
    so two web hosts can never run with different keys by accident.
    """
    configured = os.environ.get("DJANGO_SECRET_KEY", "").strip()
    if configured:
        if len(configured) < 50:
            raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 characters long.")
        return configured
    key_file = var_dir / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    if not debug and not os.environ.get("ANXIN_ALLOW_GENERATED_SECRET"):
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off.")
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(64)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key
