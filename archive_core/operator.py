"""A site opened for a driver's operator commands (`archive-core tape ...` and the like).

A driver's CLI group (added through the `archive_core_cli_commands` hook) runs under the core's
`archive-core --config FILE` and may need the site behind it: the driver instance of a
target, the catalog's record of copies, the site's leases. `OperatorSite` gives exactly that,
so a driver's commands never reach into the core's internals.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archive_core.errors import ArchiveCoreError
from archive_core.model import CopyRef

if TYPE_CHECKING:
    from archive_core.leases import Leases
    from archive_core.site import Site


class OperatorSite:
    """The site of `config_path` (default: `ARCHIVE_CORE_CONFIG`, else the system config)."""

    def __init__(self, site: Site) -> None:
        self._site = site

    @classmethod
    def open(cls, config_path: str | Path | None) -> OperatorSite:
        """The site, its config checked (ConfigError listing every problem)."""
        from archive_core.portal import ArchiveCorePlugin

        return cls(ArchiveCorePlugin(config_path).site())

    def close(self) -> None:
        self._site.close()

    def __enter__(self) -> OperatorSite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def leases(self) -> Leases:
        return self._site.catalog.leases

    def targets(self, driver: str) -> list[str]:
        """The names of the site's targets that use `driver`."""
        return sorted(n for n, t in self._site.config.targets.items() if t.driver == driver)

    def driver(self, target: str, *, driver: str) -> Any:
        """The driver instance of `target`, which must use `driver`."""
        config = self._site.config.targets.get(target)
        if config is None:
            known = ", ".join(self.targets(driver)) or "none"
            raise ArchiveCoreError(
                f"The site has no target {target!r} (targets using driver {driver}: {known})."
            )
        if config.driver != driver:
            raise ArchiveCoreError(
                f"Target {target} uses driver {config.driver}, not {driver}.", target=target
            )
        return self._site.target(target).instance

    def copies(self, external_ids: Iterable[str]) -> list[tuple[str, CopyRef]]:
        """Each copy's target and the reference a driver's requests name it by (the key is
        the external id); one error naming every id the catalog does not know."""
        found, unknown = [], []
        for external_id in dict.fromkeys(external_ids):
            record = self._site.catalog.copy(external_id)
            if record is None:
                unknown.append(external_id)
                continue
            ref = CopyRef(
                key=external_id,
                locator=record.locator,
                sha1=record.sha1,
                size=record.size,
                placement=record.placement,
            )
            found.append((record.target, ref))
        if unknown:
            raise ArchiveCoreError(
                f"The catalog has no copy {', '.join(unknown)}; name copies by their external "
                f"ids, as Portal shows them."
            )
        return found
