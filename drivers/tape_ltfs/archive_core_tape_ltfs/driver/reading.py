"""Reading copies back (restore, verify): each cartridge loaded once, files in tape order.

`schedule` is the one place that decides the order of a batch's reads: it groups them by
cartridge and sorts each group by (partition, start block). It is deliberately small and
replaceable (the multi-drive restore scheduler takes its place later); `read_all` carries out
whatever it returns, one cartridge at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import BinaryIO

import attrs

from archive_core import ArchiveCoreError
from archive_core.transfer import Digests
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.driver.loader import Loader, Mounted
from archive_core_tape_ltfs.driver.media import Cartridge, CartridgeState, MediaStore
from archive_core_tape_ltfs.driver.placement import TapeCopy
from archive_core_tape_ltfs.driver.wear import note_failure
from archive_core_tape_ltfs.health import MediaFailure
from archive_core_tape_ltfs.model import volume_serial_for

logger = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class Read:
    """One copy of one file to read."""

    key: str
    copy: TapeCopy


@attrs.frozen(kw_only=True)
class Visit:
    """One cartridge loaded once, and the reads made while it is mounted, in order."""

    barcode: str
    reads: tuple[Read, ...]


def schedule(reads: list[Read]) -> list[Visit]:
    """Group by cartridge (in barcode order), each group in on-tape order."""
    groups: dict[str, list[Read]] = {}
    for read in reads:
        groups.setdefault(read.copy.barcode, []).append(read)
    return [
        Visit(barcode=barcode, reads=tuple(sorted(group, key=lambda r: r.copy.order)))
        for barcode, group in sorted(groups.items())
    ]


#: What happens to a copy's bytes: restored to a destination, or hashed (verify).
Consume = Callable[[Read, BinaryIO], Digests]


def read_all(
    reads: list[Read],
    consume: Consume,
    *,
    loader: Loader,
    store: MediaStore,
    context: str,
) -> Iterator[tuple[Read, Digests | ArchiveCoreError]]:
    """Each read with the digests of what was consumed, or the error that stopped it."""
    for visit in schedule(reads):
        cartridge = store.cartridge(visit.barcode) or _unknown(visit)
        try:
            mounted = loader.mount(cartridge, read_only=True)
        except ArchiveCoreError as exc:
            logger.warning(
                "%s: cartridge %s cannot be read: %s", context, visit.barcode, exc.message
            )
            for read in visit.reads:
                yield read, exc
            continue
        try:
            for read in visit.reads:
                try:
                    with mounted.mount.open_read(read.copy.path) as stream:
                        yield read, consume(read, stream)
                except ArchiveCoreError as exc:
                    if isinstance(exc, errors.MediaError):
                        _note(store, loader, mounted, context)
                    yield read, exc
                except OSError as exc:
                    _note(store, loader, mounted, context)
                    yield (
                        read,
                        errors.MediaError(
                            f"Reading {read.copy.path} from cartridge {visit.barcode} failed: "
                            f"{exc.strerror or exc}.",
                            barcode=visit.barcode,
                        ),
                    )
        finally:
            loader.release(mounted)


def _note(store: MediaStore, loader: Loader, mounted: Mounted, context: str) -> None:
    failure = MediaFailure(
        drive=mounted.drive,
        barcode=mounted.barcode,
        at=loader.library.clock.now(),
        kind="read error",
    )
    note_failure(store, failure, context=context)


def _unknown(visit: Visit) -> Cartridge:
    """A cartridge the media store does not know (lost, or another host's): its volume is
    only checked against its barcode; the UUID, when the placement gives it, must match."""
    first = visit.reads[0].copy
    return Cartridge(
        barcode=visit.barcode,
        pool="",
        state=CartridgeState.READ_ONLY,
        volume_serial=volume_serial_for(visit.barcode) or "",
        volume_uuid=first.volume,
        generation=0,
        free_bytes=0,
        total_bytes=0,
        files=0,
        worm=False,
    )
