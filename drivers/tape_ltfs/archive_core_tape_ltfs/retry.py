"""Retrying the transient conditions a library is known to report, on the library's clock."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import attrs

from archive_core_tape_ltfs.errors import LibraryBecomingReady, UnitAttention
from archive_core_tape_ltfs.port import Clock

logger = logging.getLogger(__name__)

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class TransientRetry:
    """A unit attention is retried a few times (it only reports that something changed); a
    library that is becoming ready is waited for up to `becoming_ready` seconds."""

    clock: Clock
    unit_attention_retries: int = 3
    becoming_ready: float = 300.0
    interval: float = 5.0

    def __call__(self, what: str, call: Callable[[], T]) -> T:
        attentions = 0
        started = self.clock.now()
        while True:
            try:
                return call()
            except UnitAttention:
                attentions += 1
                if attentions > self.unit_attention_retries:
                    raise
                logger.info("%s: unit attention, retrying (%d)", what, attentions)
                self.clock.sleep(1.0)
            except LibraryBecomingReady:
                if self.clock.now() - started + self.interval > self.becoming_ready:
                    raise
                logger.info("%s: library becoming ready, waiting %.0f s", what, self.interval)
                self.clock.sleep(self.interval)
