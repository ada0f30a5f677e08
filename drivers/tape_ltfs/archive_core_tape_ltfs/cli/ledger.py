"""The operator's ledger: cartridges this library exported, so `import` leaves them out.

An operator exports cartridges to take them to the vault; until they are carried away they sit
in the import/export slots, where a plain `import` must not pull them straight back. The
ledger lives in the library's work directory, shared by every command on this host.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

LEDGER = "exported.json"


class ExportLedger:
    def __init__(self, work_directory: Path) -> None:
        self._path = Path(work_directory) / LEDGER

    def barcodes(self) -> frozenset[str]:
        try:
            return frozenset(json.loads(self._path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return frozenset()

    def add(self, barcode: str) -> None:
        self._write(self.barcodes() | {barcode})

    def discard(self, barcode: str) -> None:
        if barcode in self.barcodes():
            self._write(self.barcodes() - {barcode})

    def _write(self, barcodes: frozenset[str]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{LEDGER}.{os.getpid()}")
        tmp.write_text(json.dumps(sorted(barcodes)), encoding="utf-8")
        os.replace(tmp, self._path)  # whole or not at all: a crash leaves the old ledger
