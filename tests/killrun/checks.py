"""The promises checked after runs end, shared by the kill trials and the race test."""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tests.killrun.disk import scan, sha1_of
from tests.killrun.site import Site, catalog_copies, catalog_unfinished, expected_locator
from tests.killrun.text import examples, found

if TYPE_CHECKING:
    from archive_core.externalid import ExternalId


def _named_copies(archived: Sequence[Any]) -> Iterator[tuple[Any, str, ExternalId]]:
    """Every copy the archived FileSets name: the FileSet, the external id, the id parsed."""
    from archive_core.externalid import ExternalId

    for fs in archived:
        for text in fs.external_ids:
            yield fs, text, ExternalId.parse(text)


def copies_problems(what: str, site: Site, archived: Sequence[Any]) -> list[str]:
    """Every copy an archived FileSet names is on its root with the FileSet's bytes."""
    bad = []
    for fs, text, ext in _named_copies(archived):
        root = site.roots.get(ext.target)
        if root is None or sha1_of(root / ext.locator) != fs.sha1:
            bad.append(text)
    return found(
        what, bad, "copies reported archived are missing or do not hold their FileSet's bytes"
    )


def archived_state_problems(
    what: str, site: Site, archived: Sequence[Any], *, failed: Sequence[Any] = ()
) -> list[str]:
    """After archives end: every copy of `archived` whole, nothing else on the roots, one
    catalog row per copy, no open intents.

    A FileSet may appear more than once (several workers archived it). Copies of `failed`
    FileSets (reported not archived) may stay, as the driver documents, for a re-run to
    reuse; they must still be whole, and are not counted as strays.
    """
    problems = copies_problems(what, site, archived)
    expected: dict[tuple[str, str], tuple[Any, str]] = {
        (ext.target, ext.locator): (fs, text) for fs, text, ext in _named_copies(archived)
    }
    leftovers = {
        (target, expected_locator(fs)): fs
        for fs in failed
        for target in site.roots
        if (target, expected_locator(fs)) not in expected
    }
    known = expected.keys() | leftovers.keys()
    for target, root in site.roots.items():
        tree = scan(root)
        broken = [
            loc
            for loc, path in tree.files.items()
            if (target, loc) in leftovers and sha1_of(path) != leftovers[(target, loc)].sha1
        ]
        problems += found(
            what,
            broken,
            f"copies of failed files on {target} are under their final name but do not hold "
            "their bytes",
        )
        stray = [loc for loc in tree.files if (target, loc) not in known]
        problems += found(
            what, stray, f"files under final names on {target} that no archived FileSet names"
        )
        partials = [p.relative_to(root) for p in tree.temporaries if p.name.endswith(".partial")]
        problems += found(what, partials, f"temporary .partial files left on {target}")
        hidden = [p.relative_to(root) for p in tree.temporaries if not p.name.endswith(".partial")]
        problems += found(what, hidden, f"hidden files left on {target}")
    rows = catalog_copies(site)
    per_location = collections.Counter((r.target, r.locator) for r in rows)
    per_name = collections.Counter((r.target, r.name) for r in rows)
    doubled = [f"{t}:{loc} x{n}" for (t, loc), n in per_location.items() if n > 1]
    doubled += [f"{t}:{name} x{n}" for (t, name), n in per_name.items() if n > 1]
    problems += found(what, doubled, "copies have more than one catalog row")
    missing = [text for key, (_, text) in expected.items() if key not in per_location]
    problems += found(what, missing, "copies reported archived have no catalog row")
    extra = [
        r.external_id
        for r in rows
        if (r.target, r.locator) not in expected
        and (
            (r.target, r.locator) not in leftovers
            or r.sha1 != leftovers[(r.target, r.locator)].sha1
        )
    ]
    problems += found(what, extra, "catalog rows for copies no FileSet names")
    wrong = [
        r.external_id
        for r in rows
        if (key := (r.target, r.locator)) in expected
        and (r.sha1 != expected[key][0].sha1 or r.external_id != expected[key][1])
    ]
    problems += found(
        what, wrong, "catalog rows disagree with Portal's record (sha1 or external id)"
    )
    return problems + open_intent_problems(what, site)


def open_intent_problems(what: str, site: Site) -> list[str]:
    """No journal intent is left without its result once every run has ended."""
    open_ = catalog_unfinished(site)
    if not open_:
        return []
    jobs = collections.Counter(f"{r.job_id}/{r.target}/{r.operation}" for r in open_)
    return [
        f"{what}: {len(open_)} journal intents still open (job/target/operation: "
        f"{dict(jobs)}); e.g. {examples(r.name for r in open_)}"
    ]
