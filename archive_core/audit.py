"""The audit trail: who did what to the archive, when, and how it ended; tamper-evident.

Every archive, restore, delete and verify job, every scrub repair and every change of the
site's configuration appends one entry to a table of the catalog (so all workers share it):
when, who (the Portal job, or the user at the command line), which process, what (the
operation, the policy, the files and copies), and the outcome. Entries are numbered without
gaps and each one's hash covers the one before it (`prev`), so an entry edited or removed in
the database breaks the chain where it was; a head row names the last entry and its hash, so
entries cut off the end are noticed too. `archive-core audit verify` walks the chain;
`archive-core audit export` writes it as JSON Lines. Anyone who can rewrite the whole table
and its head can rewrite history: keep the head's hash (printed by `verify`) somewhere else
to anchor it. Secrets never go in: subjects hold names, ids and digests, never settings.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from archive_core.errors import CatalogError

if TYPE_CHECKING:
    from archive_core.catalog import Catalog

#: The `prev` of the first entry.
GENESIS = "0" * 64
_HEAD = "head"
_PAGE = 1000
# PostgreSQL advisory lock (space, key) serialising appends: "audi", "head".
_LOCK = (0x61756469, 0x68656164)


@attrs.frozen(kw_only=True)
class AuditEntry:
    id: int
    at: dt.datetime
    actor: str  # the Portal job, or the user at the command line
    process: str  # the worker: host and pid
    operation: str  # archive, restore, delete, verify, repair, config
    policy: str | None
    subject: str  # JSON: the files and copies, or what changed in the configuration
    outcome: str
    prev: str
    hash: str

    def as_json(self) -> dict[str, Any]:
        return {
            **attrs.asdict(self, filter=lambda a, _v: a.name != "subject"),
            "at": self.at.isoformat(),
            "subject": json.loads(self.subject),
        }


@attrs.frozen(kw_only=True)
class AuditCheck:
    """What `verify` found: how many entries were checked, the head, and every break."""

    entries: int
    head_id: int
    head_hash: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def entry_hash(
    *,
    prev: str,
    id: int,
    at: dt.datetime,
    actor: str,
    process: str,
    operation: str,
    policy: str | None,
    subject: str,
    outcome: str,
) -> str:
    """The hash an entry must carry: over the one before it and every field of its own."""
    fields = [str(id), _stamp(at), actor, process, operation, policy or "", outcome]
    text = json.dumps(fields, ensure_ascii=False) + "\n" + subject
    return hashlib.sha256(f"{prev}\n{text}".encode()).hexdigest()


def _stamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="microseconds")


class AuditTrail:
    """The trail in one catalog (`Catalog.audit`)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def record(
        self,
        *,
        actor: str,
        operation: str,
        policy: str | None,
        subject: Mapping[str, Any],
        outcome: str,
    ) -> AuditEntry:
        """Append one entry (after every entry another worker appended first)."""
        entry = dict(actor=actor, operation=operation, policy=policy, outcome=outcome)

        def work(conn: Any, t: Any) -> AuditEntry:
            return self._append(conn, t, subject=subject, **entry)

        return self._catalog._run(work, write=True)

    def record_config(self, config: Any, *, actor: str) -> AuditEntry | None:
        """Append a `config` entry when the site's configuration differs from the one the
        last such entry saw (None: the same). Checked and appended in one transaction, so
        workers starting together with a new config record it once."""

        def work(conn: Any, t: Any) -> AuditEntry | None:
            return self.config_entry(conn, t, config, actor=actor)

        return self._catalog._run(work, write=True)

    def config_entry(
        self,
        conn: Any,
        t: Any,
        config: Any,
        *,
        actor: str,
        saved: int | None = None,
    ) -> AuditEntry | None:
        """Within a transaction of the catalog's: append the `config` entry for `config`
        if it differs from the last one recorded; `saved` is the configuration version whose
        save this records (always recorded, changed or not)."""
        import sqlalchemy as sa

        fingerprint = config_fingerprint(config)
        self._lock(conn)
        query = (
            sa.select(t.audit.c.subject)
            .where(t.audit.c.operation == "config")
            .order_by(t.audit.c.id.desc())
            .limit(1)
        )
        last = conn.execute(query).scalar()
        before = json.loads(last).get("fingerprint") if last else None
        if before == fingerprint and saved is None:
            return None
        changes = config_changes(before, fingerprint)
        subject = {"source": config.source, "changes": changes, "fingerprint": fingerprint}
        if saved is not None:
            subject["version"] = saved
            outcome = f"saved as version {saved}"
        else:
            outcome = "first seen" if before is None else "changed"
        return self._append(
            conn, t, actor=actor, operation="config", policy=None, subject=subject, outcome=outcome
        )

    @staticmethod
    def _lock(conn: Any) -> None:
        """Serialise appends (SQLite's write transactions are serialised already)."""
        import sqlalchemy as sa

        if conn.dialect.name == "postgresql":
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:space, :key)"),
                {"space": _LOCK[0], "key": _LOCK[1]},
            )

    def _append(
        self,
        conn: Any,
        t: Any,
        *,
        actor: str,
        operation: str,
        policy: str | None,
        subject: Mapping[str, Any],
        outcome: str,
    ) -> AuditEntry:
        import sqlalchemy as sa

        self._lock(conn)
        head = conn.execute(
            sa.select(t.audit_head.c.last_id, t.audit_head.c.hash).where(
                t.audit_head.c.name == _HEAD
            )
        ).first()
        last_id, prev = (head[0], head[1]) if head is not None else (0, GENESIS)
        fields = dict(
            id=last_id + 1,
            at=self._catalog.now().astimezone(dt.UTC),
            actor=actor[:255],
            process=str(self._catalog.worker)[:255],
            operation=operation,
            policy=policy,
            subject=json.dumps(subject, sort_keys=True, ensure_ascii=False, default=str),
            outcome=outcome[:255],
        )
        digest = entry_hash(prev=prev, **fields)
        conn.execute(t.audit.insert().values(**fields, prev=prev, hash=digest))
        if head is None:
            conn.execute(
                t.audit_head.insert().values(name=_HEAD, last_id=fields["id"], hash=digest)
            )
        else:
            conn.execute(
                t.audit_head.update()
                .where(t.audit_head.c.name == _HEAD)
                .values(last_id=fields["id"], hash=digest)
            )
        return AuditEntry(**fields, prev=prev, hash=digest)

    def entries(self, *, since: int = 0) -> Iterator[AuditEntry]:
        """The entries after id `since`, oldest first, read a page at a time."""
        import sqlalchemy as sa

        after = since
        while True:

            def page(conn: Any, t: Any, after: int = after) -> list[AuditEntry]:
                query = (
                    sa.select(t.audit)
                    .where(t.audit.c.id > after)
                    .order_by(t.audit.c.id)
                    .limit(_PAGE)
                )
                return [_entry(row) for row in conn.execute(query).mappings()]

            rows = self._catalog._run(page, write=False)
            yield from rows
            if len(rows) < _PAGE:
                return
            after = rows[-1].id

    def head(self) -> tuple[int, str]:
        """The last entry's id and hash, as the head row records them ((0, GENESIS): none)."""
        import sqlalchemy as sa

        def work(conn: Any, t: Any) -> tuple[int, str]:
            row = conn.execute(
                sa.select(t.audit_head.c.last_id, t.audit_head.c.hash).where(
                    t.audit_head.c.name == _HEAD
                )
            ).first()
            return (row[0], row[1]) if row is not None else (0, GENESIS)

        return self._catalog._run(work, write=False)

    def verify(self) -> AuditCheck:
        """Walk the chain from the first entry: every gap, edit or cut is a problem."""
        problems: list[str] = []
        expected_id, prev, count = 1, GENESIS, 0
        for entry in self.entries():
            count += 1
            if entry.id != expected_id:
                missing = (
                    f"entry {expected_id}"
                    if entry.id == expected_id + 1
                    else f"entries {expected_id} to {entry.id - 1}"
                )
                problems.append(
                    f"{missing} {'is' if entry.id == expected_id + 1 else 'are'} missing"
                )
            elif entry.prev != prev:
                problems.append(f"entry {entry.id} does not follow entry {entry.id - 1}")
            fields = attrs.asdict(entry, filter=lambda a, _v: a.name not in ("prev", "hash"))
            if entry_hash(prev=entry.prev, **fields) != entry.hash:
                problems.append(
                    f"entry {entry.id} ({entry.operation} at {_stamp(entry.at)}) was changed: "
                    "its content does not match its hash"
                )
            expected_id, prev = entry.id + 1, entry.hash
        head_id, head_hash = self.head()
        last = expected_id - 1
        if head_id > last:
            problems.append(
                f"the trail ends at entry {last}, but its head names entry {head_id}: the "
                f"entries after {last} were removed"
            )
        elif head_id < last:
            problems.append(f"the head names entry {head_id}, but the trail goes on to {last}")
        elif head_hash != prev:
            problems.append(f"entry {last} does not match the hash the head records for it")
        return AuditCheck(
            entries=count, head_id=head_id, head_hash=head_hash, problems=tuple(problems)
        )


def _entry(row: Any) -> AuditEntry:
    from archive_core.catalog import as_utc

    return AuditEntry(
        id=int(row["id"]),
        at=as_utc(row["at"]),
        actor=row["actor"],
        process=row["process"],
        operation=row["operation"],
        policy=row["policy"],
        subject=row["subject"],
        outcome=row["outcome"],
        prev=row["prev"],
        hash=row["hash"],
    )


def record_quietly(catalog: Catalog, log: Any, **entry: Any) -> None:
    """Append an entry; a catalog that cannot take it is logged, never raised (the work it
    describes is done already, and its results are in the journal)."""
    try:
        catalog.audit.record(**entry)
    except CatalogError as exc:
        log.error("the audit trail could not record %s: %s", entry.get("operation"), exc.message)


# --- the configuration ----------------------------------------------------------------------


def config_fingerprint(config: Any) -> dict[str, Any]:
    """What the trail remembers of a site config: per target its driver and a digest of each
    setting (never a value: settings may hold secret references), per policy a digest."""
    targets = {
        name: {
            "driver": target.driver,
            "settings": {key: _digest(value) for key, value in sorted(target.settings.items())},
            # Only when set, so the fingerprints of configs from before stay the same.
            **({"disabled": True} if target.disabled else {}),
        }
        for name, target in sorted(config.targets.items())
    }
    policies = {
        uuid: _digest(
            [p.name, list(p.targets), attrs.asdict(p.bulk) if p.bulk else None, p.verified_copies]
            + (["disabled"] if p.disabled else [])
        )
        for uuid, p in sorted(config.policies.items())
    }
    return {"targets": targets, "policies": policies}


def config_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[str, Any]:
    """What changed between two fingerprints, by name (empty: nothing)."""
    if before is None:
        return {
            "first": True,
            "targets": sorted(after["targets"]),
            "policies": sorted(after["policies"]),
        }
    changes: dict[str, Any] = {}
    old_t, new_t = before.get("targets", {}), after["targets"]
    added = sorted(set(new_t) - set(old_t))
    removed = sorted(set(old_t) - set(new_t))
    changed = {}
    for name in sorted(set(old_t) & set(new_t)):
        was, now = old_t[name], new_t[name]
        keys = sorted(
            k
            for k in set(was["settings"]) | set(now["settings"])
            if was["settings"].get(k) != now["settings"].get(k)
        )
        if was["driver"] != now["driver"]:
            keys = ["driver", *keys]
        if was.get("disabled") != now.get("disabled"):
            keys = ["disabled", *keys]
        if keys:
            changed[name] = keys
    old_p, new_p = before.get("policies", {}), after["policies"]
    for key, value in (
        ("targets_added", added),
        ("targets_removed", removed),
        ("targets_changed", changed),
        ("policies_added", sorted(set(new_p) - set(old_p))),
        ("policies_removed", sorted(set(old_p) - set(new_p))),
        ("policies_changed", sorted(u for u in set(old_p) & set(new_p) if old_p[u] != new_p[u])),
    ):
        if value:
            changes[key] = value
    return changes


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
