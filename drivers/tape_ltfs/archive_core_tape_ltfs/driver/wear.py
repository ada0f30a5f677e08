"""Media errors remembered, and what they say: a drive to leave alone, a cartridge to distrust.

Every read or write error of a job is recorded with its drive and cartridge. A cartridge that
failed in several drives is marked damaged (read from, never written); a drive that failed with
several cartridges is not used by any job while those errors are recent (tape-facts §6). The
window is the rules' (a month): cleaning or servicing a drive shows in its errors stopping.
"""

from __future__ import annotations

import logging

from archive_core_tape_ltfs.driver.media import CartridgeState, MediaStore
from archive_core_tape_ltfs.health import HealthRules, MediaFailure, Verdict

logger = logging.getLogger(__name__)

RULES = HealthRules()


def verdict(store: MediaStore, *, now: float) -> Verdict:
    return RULES.judge(store.failures(since=now - RULES.window_seconds), now=now)


def note_failure(store: MediaStore, failure: MediaFailure, *, context: str) -> None:
    """Record `failure` and act on what the errors so far say."""
    store.record_failure(failure)
    found = verdict(store, now=failure.at)
    for barcode, why in found.suspect_cartridges.items():
        cartridge = store.cartridge(barcode)
        if cartridge is not None and cartridge.state not in (
            CartridgeState.DAMAGED,
            CartridgeState.RETIRED,  # out of service already, for good
        ):
            store.mark(barcode, CartridgeState.DAMAGED, why)
            logger.error("%s: %s", context, why)
    if failure.drive in found.drives_out_of_service:
        logger.error("%s: %s", context, found.drives_out_of_service[failure.drive])
