"""How a kit check says a driver broke the contract: one exception, one sentence."""

from __future__ import annotations

from typing import Any


class ContractViolation(AssertionError):
    """A driver broke the contract; the message says how."""


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise ContractViolation(message)


__all__ = ["ContractViolation", "expect"]
