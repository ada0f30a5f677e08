"""The site's targets and policies kept as versions in the catalog, the same for every worker.

Every Portal worker on every machine reads the same catalog, so a configuration saved there
(from Portal's pages or `archive-core config import`) is one configuration for all of them. A
save adds a version (numbered without gaps, with who, when and a comment) and never changes
one; a revert saves an old version's document again as the newest. A save names the version
it was made from and is refused when another was saved meanwhile, so two admins editing at
once cannot overwrite each other unseen. Each save is recorded in the audit trail in the same
transaction.

The bootstrap file still says where the catalog is (it cannot come from the catalog) and
holds the per-machine settings; `policies.choose_source` says which source's targets and
policies a site uses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from archive_core.errors import ConfigConflict, ConfigError
from archive_core.policies import (
    CATALOG,
    ConfigVersion,
    SiteConfig,
    load_config,
    with_version,
)

if TYPE_CHECKING:
    from archive_core.catalog import Catalog


def canonical(document: Mapping[str, Any]) -> str:
    """The one JSON text of a document: what is stored and what its digest covers."""
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def document_digest(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(document).encode()).hexdigest()


def document_of(config: SiteConfig) -> dict[str, Any]:
    """The targets and policies of `config` as a document: the config file's `[targets]` and
    `[policies]` tables, which is also what the catalog stores and `config export` writes."""
    targets: dict[str, Any] = {}
    implicit: dict[str, Any] = {}
    for name, target in config.targets.items():
        entry: dict[str, Any] = {"driver": target.driver, "settings": dict(target.settings)}
        if target.path == f"policies.{name}":
            implicit[name] = entry  # declared inside its policy; written back there
            continue
        if target.verified_copies:
            entry["verified_copies"] = target.verified_copies
        if target.disabled:
            entry["disabled"] = True
        targets[name] = entry
    policies: dict[str, Any] = {}
    for uuid, policy in config.policies.items():
        entry = {"name": policy.name}
        if uuid in implicit:
            entry.update(implicit[uuid])
        else:
            entry["targets"] = list(policy.targets)
        if policy.bulk is not None:
            entry["bulk"] = {k: v for k, v in attrs.asdict(policy.bulk).items() if v is not None}
        if policy.verified_copies:
            entry["verified_copies"] = policy.verified_copies
        if policy.repair:
            entry["repair"] = True
        if policy.disabled:
            entry["disabled"] = True
        policies[uuid] = entry
    return {"targets": targets, "policies": policies}


class ConfigVersions:
    """The configuration versions in one catalog (`Catalog.config_versions`)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def latest_number(self) -> int:
        """The newest version's number (0: none saved); one small query, made per call of a
        worker to see whether it must reload."""
        import sqlalchemy as sa

        def work(conn: Any, t: Any) -> int:
            return int(
                conn.execute(sa.select(sa.func.max(t.config_versions.c.number))).scalar() or 0
            )

        return self._catalog._run(work, write=False)

    def latest(self) -> ConfigVersion | None:
        versions = self.history(limit=1)
        return versions[0] if versions else None

    def get(self, number: int) -> ConfigVersion | None:
        import sqlalchemy as sa

        def work(conn: Any, t: Any) -> ConfigVersion | None:
            query = sa.select(t.config_versions).where(t.config_versions.c.number == number)
            row = conn.execute(query).mappings().first()
            return _version(row) if row is not None else None

        return self._catalog._run(work, write=False)

    def history(self, *, limit: int | None = None) -> list[ConfigVersion]:
        """Saved versions, newest first."""
        import sqlalchemy as sa

        def work(conn: Any, t: Any) -> list[ConfigVersion]:
            query = sa.select(t.config_versions).order_by(t.config_versions.c.number.desc())
            if limit is not None:
                query = query.limit(limit)
            return [_version(row) for row in conn.execute(query).mappings()]

        return self._catalog._run(work, write=False)

    def save(
        self,
        document: Mapping[str, Any],
        *,
        config: SiteConfig,
        actor: str,
        comment: str = "",
        based_on: int,
    ) -> ConfigVersion:
        """Store `document` as the next version, made from version `based_on` (0: from none).

        `config` is the site config with this document's targets and policies, validated
        by the caller (`configedit.validate`); the audit trail records what changed in it.
        Raises ConfigConflict when `based_on` is no longer the newest version.
        """
        import sqlalchemy as sa

        text = canonical(document)
        digest = hashlib.sha256(text.encode()).hexdigest()

        def work(conn: Any, t: Any) -> ConfigVersion:
            # The audit trail's lock: saves (and their audit entries) go one at a time.
            self._catalog.audit._lock(conn)
            latest = int(
                conn.execute(sa.select(sa.func.max(t.config_versions.c.number))).scalar() or 0
            )
            if latest != based_on:
                raise ConfigConflict(
                    f"The configuration was changed meanwhile: version {latest} was saved "
                    f"after version {based_on}, which these changes were made from. Reload "
                    "to see it, then make the changes again.",
                    based_on=based_on,
                    latest=latest,
                )
            row = dict(
                number=latest + 1,
                at=self._catalog.now().astimezone(dt.UTC),
                actor=actor[:255],
                comment=comment,
                document=text,
                digest=digest,
            )
            conn.execute(t.config_versions.insert().values(**row))
            saved = _version(row)
            self._catalog.audit.config_entry(
                conn, t, with_version(config, saved), actor=actor, saved=saved.number
            )
            return saved

        return self._catalog._run(work, write=True)


def _version(row: Mapping[str, Any]) -> ConfigVersion:
    from archive_core.catalog import as_utc

    return ConfigVersion(
        number=int(row["number"]),
        at=as_utc(row["at"]),
        actor=row["actor"],
        comment=row["comment"],
        document=json.loads(row["document"]),
        digest=row["digest"],
    )


def open_catalog(config: SiteConfig) -> Catalog:
    from archive_core.catalog import Catalog

    return Catalog(
        config.catalog_url, password=config.catalog_password, lock_wait=config.catalog_lock_wait
    )


def load(path: str | os.PathLike[str]) -> tuple[SiteConfig, Catalog | None]:
    """The site config the bootstrap file at `path` leads to, and (with the catalog as the
    source) the catalog its targets and policies were read from, for the Site to keep.

    Raises ConfigError for a bad file, for a catalog that cannot be read (its message names
    the catalog, never a password) and for a stored version that no longer validates.
    """
    from archive_core.errors import CatalogError

    config = load_config(Path(path))
    if config.config_source.kind != CATALOG:
        return config, None
    catalog = open_catalog(config)
    try:
        version = catalog.config_versions.latest()
        return with_version(config, version), catalog
    except CatalogError as exc:
        catalog.close()
        raise ConfigError(
            [f"the catalog's configuration cannot be read: {exc.message}"],
            source=config.source,
            from_catalog=True,
        ) from None
    except ConfigError:
        catalog.close()
        raise
