"""Secrets given by reference (`env:NAME`, `file:PATH`) and a value type that never shows itself."""

from __future__ import annotations

import os
from pathlib import Path

MASK = "********"


class Secret:
    """A secret value: `repr`, `str` and f-strings show a mask; `reveal()` gives the value."""

    __slots__ = ("_reference", "_value")

    def __init__(self, value: str, *, reference: str | None = None) -> None:
        self._value = value
        self._reference = reference

    def reveal(self) -> str:
        return self._value

    @property
    def reference(self) -> str | None:
        """Where the secret came from (`env:NAME`), safe to show; None for inline values."""
        return self._reference

    def __repr__(self) -> str:
        return f"Secret({self._reference or MASK})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self):
        # Pickling would write the secret to wherever the pickle goes; refuse.
        raise TypeError("Secret values cannot be pickled")


def resolve_secret(reference: object) -> Secret:
    """Turn `env:NAME` or `file:PATH` into a Secret; inline secrets are refused.

    Raises ValueError with a message that names the reference, never the value.
    """
    if isinstance(reference, Secret):
        return reference
    if not isinstance(reference, str):
        raise ValueError("a secret must be a string reference: env:NAME or file:PATH")
    kind, sep, where = reference.partition(":")
    if not sep or kind not in ("env", "file") or not where:
        raise ValueError("secrets must be given by reference (env:NAME or file:PATH), not inline")
    if kind == "env":
        value = os.environ.get(where)
        if value is None:
            raise ValueError(f"environment variable {where} is not set")
        return Secret(value, reference=reference)
    path = Path(where)
    try:
        value = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read secret file {where}: {exc.strerror}") from None
    # Files written with `echo` end in a newline that is not part of the secret.
    return Secret(value.rstrip("\r\n"), reference=reference)
