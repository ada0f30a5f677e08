"""The contract every driver proves, as plain check functions over a `Harness`.

Each check raises `ContractViolation` (an AssertionError) with a sentence saying what the
driver did wrong. The pytest mixin (`DriverContract`) turns each into a test, and
`check_driver` runs them without pytest. A check names the capabilities it needs and the
optional input it uses; it is skipped, with the reason, when the driver lacks either.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from archive_core.driver import API_VERSION, Capability, DriverContext
from archive_core.errors import ArchiveCoreError
from archive_core.testing.harness import KIT_POLICY, KIT_TARGET, Harness
from archive_core.testing.verdict import ContractViolation, expect


@attrs.frozen(kw_only=True)
class Check:
    name: str
    function: Callable[[Harness], None] = attrs.field(repr=False)
    needs: frozenset[Capability] = frozenset()
    uses: str | None = None  # a DriverUnderTest field the check needs set
    # Any other reason the check cannot apply (the driver is not an ObjectStoreDriver ...).
    gate: Callable[[Harness], str | None] | None = attrs.field(default=None, repr=False)
    doc: str = ""

    def skip_reason(self, harness: Harness) -> str | None:
        """Why this check does not apply to the driver, or None."""
        missing = sorted(c.value for c in self.needs - harness.capabilities)
        if missing:
            return f"driver {harness.driver_name!r} does not declare {', '.join(missing)}"
        if self.uses is not None and not getattr(harness.subject, self.uses):
            return f"no {self.uses} given for driver {harness.driver_name!r}"
        return self.gate(harness) if self.gate is not None else None


CHECKS: list[Check] = []


def check(
    *needs: Capability,
    uses: str | None = None,
    gate: Callable[[Harness], str | None] | None = None,
) -> Callable[[Callable], Callable]:
    def register(function: Callable[[Harness], None]) -> Callable[[Harness], None]:
        CHECKS.append(
            Check(
                name=function.__name__,
                function=function,
                needs=frozenset(needs),
                uses=uses,
                gate=gate,
                doc=(function.__doc__ or "").strip().splitlines()[0],
            )
        )
        return function

    return register


# --- declarations and configuration ------------------------------------------------------------


@check()
def declares_its_metadata_without_io(h: Harness) -> None:
    """The class declares name, api version, capabilities and Config; every setting has help."""
    from archive_core.registry import FixedRegistry

    cls = h.driver_class
    try:
        FixedRegistry({h.driver_name: cls}).load(h.driver_name)
    except ArchiveCoreError as exc:
        raise ContractViolation(exc.message) from None
    expect(cls.api_version == API_VERSION, f"api_version is {cls.api_version}, not {API_VERSION}")
    undocumented = [f.name for f in attrs.fields(cls.Config) if not f.metadata.get("help")]
    expect(
        not undocumented,
        f"settings without help text (declare them with archive_core.setting(help=...)): "
        f"{', '.join(undocumented)}",
    )
    expected = h.subject.expected_capabilities
    if expected is not None:
        expect(
            h.capabilities == frozenset(expected),
            f"declares {sorted(c.value for c in h.capabilities)}, "
            f"expected {sorted(c.value for c in expected)}",
        )


@check()
def construction_does_no_io(h: Harness) -> None:
    """Building a driver instance opens no file, socket or process: Portal builds them at start."""
    config = _config_of(h, h.subject.settings)
    context = DriverContext(target=KIT_TARGET, state_dir=h.workdir / "no-io-state")
    with _recording_io() as events:
        instance = h.driver_class(config, context)
    try:
        expect(
            not events,
            f"{h.driver_class.__name__}(config, context) did I/O: {'; '.join(events[:5])}. "
            "Connect or open storage in the operations or check_ready(), not in __init__.",
        )
        expect(
            not (h.workdir / "no-io-state").exists(),
            "the driver created its state directory while being constructed",
        )
    finally:
        instance.close()


@check()
def config_rejects_unknown_settings(h: Harness) -> None:
    """An unknown setting is refused with its path; the target is not ready; files fail cleanly."""
    from archive_core.policies import structure

    bad = {**h.subject.settings, "no_such_setting": 1}
    _, problems = structure(h.driver_class.Config, bad, path=f"targets.{KIT_TARGET}.settings")
    expect(
        any(f"targets.{KIT_TARGET}.settings" in p and "no_such_setting" in p for p in problems),
        f"the unknown setting no_such_setting was not reported with its path: {problems}",
    )
    plugin = h.plugin_for(bad)
    expect(not plugin.is_ready(), "is_ready() is True for a target with an unknown setting")
    archived, not_archived, error = _archive(plugin, [h.media("a.bin", b"abc")])
    expect(not archived and len(not_archived) == 1, "a misconfigured target archived a file")
    expect("no_such_setting" in error, f"the error does not name the bad setting: {error!r}")


@check(uses="invalid_settings")
def invalid_settings_are_refused_with_their_path(h: Harness) -> None:
    """Each of the author's invalid settings is refused, the message naming the setting's path."""
    from archive_core.policies import structure

    for settings, text in h.subject.invalid_settings:
        config, problems = structure(
            h.driver_class.Config, settings, path=f"targets.{KIT_TARGET}.settings"
        )
        expect(config is None, f"settings {dict(settings)!r} were accepted")
        joined = "; ".join(problems)
        expect(text in joined, f"refusing {dict(settings)!r} said {joined!r}, without {text!r}")
        expect(f"targets.{KIT_TARGET}.settings" in joined, f"no setting path in {joined!r}")


@check()
def secrets_never_show(h: Harness) -> None:
    """Secret settings never appear in repr, errors, logs or results."""
    secret_fields = [f for f in attrs.fields(h.driver_class.Config) if f.metadata.get("secret")]
    if not secret_fields:
        return  # nothing secret to leak
    values = {f.name: f"kit-secret-{uuid.uuid4().hex}" for f in secret_fields}
    names = {f.name: f"ARCHIVE_CORE_KIT_SECRET_{f.name.upper()}" for f in secret_fields}
    saved = {n: os.environ.get(n) for n in names.values()}
    os.environ.update({names[k]: v for k, v in values.items()})
    try:
        settings = {**h.subject.settings, **{k: f"env:{names[k]}" for k in values}}
        config = _config_of(h, settings)
        instance = h.driver_class(config, DriverContext(target=KIT_TARGET, state_dir=h.workdir))
        shown = [repr(config), str(config), repr(instance)]
        instance.close()
        from archive_core.policies import structure

        _, problems = structure(
            h.driver_class.Config, {**settings, "no_such_setting": 1}, path="settings"
        )
        shown.extend(problems)
        with _captured_logs() as records:
            plugin = h.plugin_for(settings)
            plugin.is_ready()
            archived, _, error = _archive(plugin, [h.media("secret.bin", b"s" * 100)])
            shown.append(error)
            shown.extend(repr(fs) for fs in archived)
            if archived and h.supports(Capability.RESTORE):
                try:
                    plugin.restore([h.elsewhere(fs) for fs in archived], KIT_POLICY)
                except ArchiveCoreError as exc:
                    shown.append(exc.message)
        shown.extend(records)
        for name, value in values.items():
            leaks = [text for text in shown if value in text]
            if leaks:
                where = leaks[0].replace(value, "<the secret>")[:300]
                raise ContractViolation(f"the secret setting {name} was shown: {where!r}")
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


# --- readiness ---------------------------------------------------------------------------------

#: How long a driver's own probe may take to say "not ready": Portal's default
#: `ready_timeout_seconds`, the longest the core waits by default.
READY_TIMEOUT_SECONDS = 5.0


@check()
def ready_with_a_reason_when_configured(h: Harness) -> None:
    """A well configured target is ready, and says why in words."""
    readiness = h.site().readiness(h.site().policy(KIT_POLICY))
    expect(readiness.ok, f"a well configured target is not ready: {readiness.reason}")
    expect(readiness.reason.strip(), "check_ready() gave no reason")
    expect(h.plugin.is_ready(), "is_ready() is False for a well configured target")


@check(uses="unreachable_settings")
def not_ready_with_a_reason_when_unreachable(h: Harness) -> None:
    """A target whose storage does not answer is not ready, with a reason; files fail cleanly."""
    plugin = h.plugin_for(h.subject.unreachable_settings or {})
    site = plugin.site()
    readiness = site.readiness(site.policy(KIT_POLICY))
    expect(not readiness.ok, "a target whose storage does not answer reports ready")
    expect(readiness.reason.strip(), "not ready, but no reason given")
    expect(not plugin.is_ready(), "is_ready() is True for an unreachable target")
    archived, not_archived, error = _archive(plugin, [h.media("u.bin", b"unreachable")])
    expect(not archived and len(not_archived) == 1, "a file was archived to unreachable storage")
    expect(error.strip(), "the failure has no message for the admin")
    # Seen from the driver itself: the core stops waiting after ready_timeout_seconds, but a
    # probe still hanging keeps its target "not ready" until it returns, even once the
    # storage is back, because the core never starts a second probe beside a hung one.
    from archive_core.testing.calls import answer_within

    with h.driver(h.subject.unreachable_settings) as driver:
        answered, direct = answer_within(READY_TIMEOUT_SECONDS, driver.check_ready)
    expect(
        answered,
        f"check_ready() gave no answer within {READY_TIMEOUT_SECONDS:g} s (Portal's default "
        "ready_timeout_seconds) for storage that does not answer: give the storage client a "
        "connect timeout shorter than that, and no retries in the probe",
    )
    expect(
        not direct.ok and direct.reason.strip(),
        f"check_ready() called directly answered {direct!r} for unreachable storage",
    )


# --- archive and restore ---------------------------------------------------------------------


@check(Capability.ARCHIVE, Capability.RESTORE)
def archive_then_restore_gives_back_equal_bytes_and_sha1(h: Harness) -> None:
    """Archived files come back byte for byte, with Portal's sha1, as the FileSets Portal passed."""
    originals = [
        h.media("clip.mov", os.urandom(300_000)),
        h.media("notes.txt", b"take 3 is the good one\n"),
        h.media("empty.wav", b""),
        h.media("big.mxf", size=h.subject.max_file_size),
    ]
    archived, not_archived, error = _archive(h.plugin, originals)
    expect(not not_archived and error == "", f"archive failed: {error}")
    expect(len(archived) == len(originals), "archive did not return every FileSet")
    for before, after in zip(originals, archived, strict=True):
        expect(type(after) is type(before), "archive returned a type other than Portal's FileSet")
        expect(
            after._replace(external_ids=before.external_ids) == before,
            "archive changed more of a FileSet than its external_ids",
        )
        expect(after.external_ids, f"{before.files[0]} came back without external_ids")
        for text in after.external_ids:
            expect(
                text.startswith(f"{h.scheme}://{KIT_TARGET}/"),
                f"external id {text!r} is not {h.scheme}://{KIT_TARGET}/<locator>",
            )
    wanted = [h.elsewhere(fs) for fs in archived]
    restored = h.plugin.restore(wanted, KIT_POLICY)
    expect(list(restored) == wanted, "restore did not return the FileSets it was given")
    for before, after in zip(originals, wanted, strict=True):
        data = h.bytes_of(after)
        expect(data == h.bytes_of(before), f"{after.files[0]} differs from what was archived")
        expect(hashlib.sha1(data).hexdigest() == before.sha1, "the restored sha1 differs")


@check(Capability.ARCHIVE)
def repeated_archive_is_idempotent(h: Harness) -> None:
    """Archiving the same FileSets again gives the same external ids and no second copy."""
    originals = [h.media(f"again{i}.bin", os.urandom(1000 + i)) for i in range(3)]
    first, _, error = _archive(h.plugin, originals)
    expect(error == "", f"archive failed: {error}")
    second, _, error = _archive(h.plugin, originals)
    expect(error == "", f"archiving again failed: {error}")
    expect(
        [fs.external_ids for fs in first] == [fs.external_ids for fs in second],
        "archiving again gave other external ids",
    )
    copies = h.site().catalog.copies(target=KIT_TARGET)
    expect(len(copies) == len(originals), f"{len(copies)} catalog copies for 3 files")
    # A fresh site (catalog lost, or another worker) finds the driver's copies by itself.
    other = h.plugin_for(h.subject.settings)
    third, _, error = _archive(other, originals)
    expect(error == "", f"archiving from a second site failed: {error}")
    expect(
        [fs.external_ids for fs in third] == [fs.external_ids for fs in first],
        "a second site archived the same files under other external ids",
    )


@check(Capability.ARCHIVE, Capability.RESTORE)
def items_sharing_bytes_get_copies_of_their_own(h: Harness) -> None:
    """Two items whose files hold the same bytes (one sha1) are archived as two copies."""
    content = os.urandom(4000)
    first, second = h.media("shared.mov", content), h.media("shared.mov", content)
    archived, _, error = _archive(h.plugin, [first, second])
    expect(error == "", f"archive failed: {error}")
    expect(
        archived[0].external_ids != archived[1].external_ids,
        f"items {first.item_id} and {second.item_id} share one copy: {archived[0].external_ids}",
    )
    if h.supports(Capability.DELETE):  # removing one item's copy must leave the other's
        h.plugin.delete([archived[0]], KIT_POLICY)
    wanted = h.elsewhere(archived[1])
    h.plugin.restore([wanted], KIT_POLICY)
    expect(h.bytes_of(wanted) == content, "the second item's copy came back different")


@check(Capability.ARCHIVE)
def partial_failure_is_returned_as_not_archived(h: Harness) -> None:
    """Bad files of a batch come back in not_archived with reasons; the good ones are archived."""
    good = [h.media("good1.bin", b"1" * 500), h.media("good2.bin", b"2" * 500)]
    missing = h.media("gone.bin", b"will be removed")
    os.unlink(missing.files[0])
    wrong = h.media("wrong.bin", b"bytes that are not what Portal hashed")._replace(
        sha1=hashlib.sha1(b"other bytes").hexdigest()
    )
    batch = [good[0], missing, wrong, good[1]]
    try:
        archived, not_archived, error = _archive(h.plugin, batch)
    except Exception as exc:
        raise ContractViolation(f"archive raised for a partial failure: {exc!r}") from None
    expect(len(archived) == 2 and all(fs.external_ids for fs in archived), "good files failed")
    expect(not_archived == [missing, wrong], "not_archived is not exactly the two bad FileSets")
    for bad in (missing, wrong):
        expect(bad.files[0] in error, f"the error does not name {bad.files[0]}: {error!r}")
    expect("Traceback" not in error, "the error shown to the admin holds a Python traceback")
    _expect_nothing_stored_for(h, wrong)


@check(Capability.RESTORE)
def restore_of_a_missing_copy_raises_an_admin_readable_error(h: Harness) -> None:
    """Restoring a copy that is not there raises one error naming the file and the copy."""
    sha1 = hashlib.sha1(b"never archived").hexdigest()
    locator = f"never-archived_VX-404_{sha1}.bin"
    missing = h.media("never.bin", b"never archived")._replace(
        external_ids=[f"{h.scheme}://{KIT_TARGET}/{locator}"]
    )
    target = h.elsewhere(missing)
    try:
        h.plugin.restore([target], KIT_POLICY)
    except ArchiveCoreError as exc:
        message = exc.message
        expect(target.files[0] in message, f"the error does not name the file: {message!r}")
        expect(locator in message, f"the error does not name the copy: {message!r}")
        expect("Traceback" not in message, "the error holds a Python traceback")
    except Exception as exc:
        raise ContractViolation(
            f"restore raised {type(exc).__name__}, not an archive-core error with a message "
            f"for the admin: {exc}"
        ) from None
    else:
        raise ContractViolation("restore of a copy that does not exist did not raise")
    expect(not os.path.exists(target.files[0]), "a failed restore left a file behind")


@check(Capability.ARCHIVE, Capability.DELETE)
def delete_removes_the_copy(h: Harness) -> None:
    """Delete removes every copy and returns the FileSets; deleting again is not an error."""
    archived, _, error = _archive(h.plugin, [h.media("doomed.bin", os.urandom(2000))])
    expect(error == "", f"archive failed: {error}")
    deleted = h.plugin.delete(archived, KIT_POLICY)
    expect(list(deleted) == archived, "delete did not return the deleted FileSets")
    expect(not h.site().catalog.copies(target=KIT_TARGET), "the catalog still lists the copy")
    if h.supports(Capability.RESTORE):
        try:
            h.plugin.restore([h.elsewhere(fs) for fs in archived], KIT_POLICY)
        except ArchiveCoreError:
            pass
        else:
            raise ContractViolation("a deleted copy could still be restored")
    again = h.plugin.delete(archived, KIT_POLICY)
    expect(list(again) == archived, "deleting an already deleted copy failed")


@check(Capability.ARCHIVE)
def stat_finds_a_copy_with_its_size_and_reports_a_missing_one(h: Harness) -> None:
    """stat() answers for every copy: there with its size, or a failure when it is not there."""
    from archive_core.model import CopyRef, StatRequest

    content = os.urandom(3333)
    _, _, error = _archive(h.plugin, [h.media("stat.bin", content)])
    expect(error == "", f"archive failed: {error}")
    [record] = h.site().catalog.copies(target=KIT_TARGET)
    driver = h.site().target(KIT_TARGET).instance
    expect(
        callable(getattr(driver, "stat", None)),
        f"{h.driver_class.__name__} has no stat(): the core must write every copy the catalog "
        "remembers again, because it cannot ask the target whether it is still there",
    )
    missing = record.locator + ".not-there"
    request = StatRequest(
        policy=KIT_POLICY,
        target=KIT_TARGET,
        job_id="kit-stat",
        items=[CopyRef(key="there", locator=record.locator), CopyRef(key="gone", locator=missing)],
    )
    outcomes = {o.key: o for o in driver.stat(request)}
    expect(set(outcomes) == {"there", "gone"}, f"stat() answered for {sorted(outcomes)}")
    there, gone = outcomes["there"], outcomes["gone"]
    expect(there.ok, f"stat() does not find the copy just archived: {there.error}")
    expect(there.size == len(content), f"stat() gives size {there.size}, not {len(content)}")
    expect(
        not there.sha1 or there.sha1 == hashlib.sha1(content).hexdigest(),
        f"stat() gives sha1 {there.sha1}, which is not the copy's",
    )
    expect(not gone.ok, f"stat() reports {missing}, which was never archived, as there")
    expect((gone.error or "").strip(), "stat() gives no reason for a missing copy")


@check(Capability.ARCHIVE, Capability.DELETE, Capability.RESTORE)
def a_copy_removed_behind_the_catalogs_back_is_archived_again(h: Harness) -> None:
    """A copy gone from storage while the catalog still lists it is written again, not reused."""
    from archive_core.model import CopyRef, DeleteRequest

    original = h.media("vanishing.bin", os.urandom(2500))
    _, _, error = _archive(h.plugin, [original])
    expect(error == "", f"archive failed: {error}")
    [record] = h.site().catalog.copies(target=KIT_TARGET)
    driver = h.site().target(KIT_TARGET).instance
    # Removed through the driver alone, so the catalog still lists it: an admin's rm, or a
    # delete killed before it was journaled.
    request = DeleteRequest(
        policy=KIT_POLICY,
        target=KIT_TARGET,
        job_id="kit-behind",
        items=[CopyRef(key="0", locator=record.locator)],
    )
    [removed] = list(driver.delete(request))
    expect(removed.ok, f"the driver could not delete its own copy: {removed.error}")
    again, _, error = _archive(h.plugin, [original])
    expect(error == "", f"archiving again failed: {error}")
    wanted = h.elsewhere(again[0])
    try:
        h.plugin.restore([wanted], KIT_POLICY)
    except ArchiveCoreError as exc:
        raise ContractViolation(
            f"a file reported archived again cannot be restored (the copy was not rewritten): "
            f"{exc.message}"
        ) from None
    expect(h.bytes_of(wanted) == h.bytes_of(original), "the rewritten copy differs")


@check(Capability.ARCHIVE, Capability.VERIFY)
def verify_reads_back_what_was_archived(h: Harness) -> None:
    """Verify reads each archived copy back and finds Portal's sha1."""
    archived, _, error = _archive(
        h.plugin, [h.media("v1.bin", os.urandom(5000)), h.media("v2.bin", b"")]
    )
    expect(error == "", f"archive failed: {error}")
    verified, failed, error = h.plugin.verify(archived, KIT_POLICY)
    expect(not failed and len(verified) == 2, f"verify failed: {error}")


@check(Capability.ARCHIVE, Capability.PLACEMENT)
def placement_comes_back_with_every_request_for_the_copy(h: Harness) -> None:
    """A driver that declares placement returns it with each copy it archives, and gets that
    placement back with every later request for the copy: stat, restore, verify, delete."""
    originals = [h.media(f"placed{i}.bin", os.urandom(2000 + i)) for i in range(2)]
    archived, _, error = _archive(h.plugin, originals)
    expect(error == "", f"archive failed: {error}")
    placed = {r.locator: r.placement for r in h.site().catalog.copies(target=KIT_TARGET)}
    for locator, placement in placed.items():
        expect(
            bool(placement),
            f"the copy {locator} was archived without placement, though the driver declares "
            "the placement capability",
        )
    wanted = {"stat"} | {op for op in ("restore", "verify", "delete") if h.supports(Capability(op))}
    with _requests_to(h.site().target(KIT_TARGET).instance, wanted) as seen:
        _archive(h.plugin, originals)  # again: the core stats each copy it remembers
        if h.supports(Capability.RESTORE):
            h.plugin.restore([h.elsewhere(fs) for fs in archived], KIT_POLICY)
        if h.supports(Capability.VERIFY):
            h.plugin.verify(archived, KIT_POLICY)
        if h.supports(Capability.DELETE):
            h.plugin.delete(archived, KIT_POLICY)
    for operation in sorted(wanted):
        expect(seen[operation], f"the core sent no {operation} request: nothing to check")
        for item in seen[operation]:
            expect(
                item.placement == placed.get(item.locator),
                f"{operation} of {item.locator} was given placement {item.placement!r}, not "
                f"{placed.get(item.locator)!r}, which archive returned",
            )


@contextlib.contextmanager
def _requests_to(instance: Any, operations: set[str]) -> Iterator[dict[str, list[Any]]]:
    """The items of every request the core sends `instance` for `operations`, while open."""
    seen: dict[str, list[Any]] = {op: [] for op in operations}

    def recording(operation: str, call: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def record(request: Any) -> Any:
            seen[operation].extend(request.items)
            return call(request)

        return record

    for operation in operations:
        setattr(instance, operation, recording(operation, getattr(instance, operation)))
    try:
        yield seen
    finally:
        for operation in operations:
            delattr(instance, operation)  # the class's method shows through again


@check(Capability.ARCHIVE, Capability.BULK)
def a_bulk_batch_of_many_files_is_archived_in_one_call(h: Harness) -> None:
    """A bulk policy takes hundreds of FileSets in one call."""
    batch = [h.media(f"bulk{i:04d}.bin", os.urandom(64)) for i in range(300)]
    archived, not_archived, error = _archive(h.plugin, batch)
    expect(len(archived) == 300 and not not_archived, f"bulk archive failed: {error[:500]}")
    policies = {p["uuid"]: p for p in h.plugin.get_policies()}
    expect(policies[KIT_POLICY]["bulk_support"], "a bulk policy is not offered as bulk to Portal")


@check(Capability.ARCHIVE, Capability.RESTORE)
def awkward_file_sets_round_trip(h: Harness) -> None:
    """Unicode, spaces, deep folders, empty and large sparse files, shared content, big batches."""
    from hypothesis import HealthCheck, given, settings

    from archive_core.testing.strategies import batches

    @settings(
        max_examples=h.subject.examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(batches(h.subject.max_file_size))
    def round_trip(specs: list[Any]) -> None:
        originals = [spec.on(h) for spec in specs]
        archived, not_archived, error = _archive(h.plugin, originals)
        expect(not not_archived, f"archive failed: {error}")
        ids = [fs.external_ids for fs in archived]
        expect(len({tuple(i) for i in ids}) == len(ids), "two files got the same external id")
        wanted = [h.elsewhere(fs) for fs in archived]
        h.plugin.restore(wanted, KIT_POLICY)
        for before, after in zip(originals, wanted, strict=True):
            expect(
                h.bytes_of(after) == h.bytes_of(before),
                f"{before.files[0]} came back different",
            )

    round_trip()


# --- hostile names -----------------------------------------------------------------------------

HOSTILE_ITEM_IDS = ["../../../escaped", "/absolute", "a/../../..", "..", "VX-1/../../x", "x\0y"]


@check(Capability.ARCHIVE)
def hostile_names_never_escape_the_target(h: Harness) -> None:
    """Item ids and names with '..', '/', NUL or 255 bytes are stored safely or refused per file."""
    before = _tree(h.base)
    batch = [h.media("clip.mov", b"hostile", item_id=item) for item in HOSTILE_ITEM_IDS]
    batch.append(h.media("n" * 255, b"long name"))
    batch.append(h.media("..data", b"dots"))
    archived, not_archived, error = _archive(h.plugin, batch)
    expect(len(archived) + len(not_archived) == len(batch), "a FileSet went missing")
    for fs in not_archived:
        expect(fs.files[0] in error, f"a refused file is not named in the error: {error!r}")
    _expect_nothing_escaped(h, before)


@check(Capability.RESTORE)
def hostile_external_ids_never_read_outside_the_target(h: Harness) -> None:
    """External ids that climb out of the target fail to restore and read nothing outside it."""
    planted = h.base / "level-1" / "planted.txt"
    planted.write_bytes(b"outside the archive")
    hostile = [
        "../../planted.txt",
        "../../../level-1/planted.txt",
        "%2E%2E/%2E%2E/planted.txt",
        "a/../../../planted.txt",
        f"/{planted}",
        str(planted),
    ]
    for locator in hostile:
        target = h.elsewhere(h.media("restore.bin", b"x"))._replace(
            external_ids=[f"{h.scheme}://{KIT_TARGET}/{locator}"]
        )
        try:
            h.plugin.restore([target], KIT_POLICY)
        except ArchiveCoreError:
            pass
        else:
            if Path(target.files[0]).read_bytes() == planted.read_bytes():
                raise ContractViolation(f"external id locator {locator!r} read {planted}")


# --- faults at the author's seams ------------------------------------------------------------

#: The sizes of the fault checks' files, before `part_span` is added (stated in the guide).
FAILING_WRITE_FILE_SIZE = 3000
TRUNCATED_FILE_SIZE = 200_000
TRUNCATED_AFTER = 50_000
TRANSIENT_FILE_SIZE = 10_000


def part_span(h: Harness) -> int:
    """Bytes added to every fault file, so that it spans the driver's largest declared part
    and a fault after the first part still lands inside the file (0 without chunk_sizes)."""
    return max(h.subject.chunk_sizes, default=0)


@check(Capability.ARCHIVE, uses="write_seam")
def a_failing_write_fails_only_that_file(h: Harness) -> None:
    """An I/O error on one write fails that file alone, retryably, with no copy left for it."""
    from archive_core.testing import faults

    owner, attribute = h.subject.write_seam  # type: ignore[misc]
    size = FAILING_WRITE_FILE_SIZE + part_span(h)
    batch = [h.media(f"w{i}.bin", os.urandom(size)) for i in range(3)]
    with faults.injected(owner, attribute, faults.fail_on_call(2)) as fault:
        archived, not_archived, error = _archive(h.plugin, batch)
    expect(fault.calls >= 2, f"the write seam {attribute} was called {fault.calls} times")
    expect(len(not_archived) == 1, f"{len(not_archived)} files failed, expected exactly one")
    expect(not_archived[0].files[0] in error, f"the failed file is not named: {error!r}")
    archived_again, failed_again, error = _archive(h.plugin, not_archived)
    expect(not failed_again, f"the failed file could not be archived afterwards: {error}")
    _expect_restorable(h, [*archived, *archived_again], batch)


@check(Capability.ARCHIVE, uses="read_seam")
def a_truncated_read_is_caught_by_the_sha1_check(h: Harness) -> None:
    """A source that ends early never becomes an archived copy."""
    from archive_core.testing import faults

    owner, attribute = h.subject.read_seam  # type: ignore[misc]
    span = part_span(h)
    victim = h.media("cut.bin", os.urandom(TRUNCATED_FILE_SIZE + span))
    with faults.injected(owner, attribute, faults.truncate(after=TRUNCATED_AFTER + span)):
        archived, not_archived, error = _archive(h.plugin, [victim])
    expect(not archived and not_archived == [victim], "a truncated read was archived")
    expect(victim.files[0] in error, f"the failure does not name the file: {error!r}")
    expect(not h.site().catalog.copies(target=KIT_TARGET), "the catalog records the bad copy")
    _expect_nothing_stored_for(h, victim)
    archived, _, error = _archive(h.plugin, [victim])
    expect(archived, f"after the fault the file could not be archived: {error}")
    _expect_restorable(h, archived, [victim])


# --- running the checks ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CheckResult:
    name: str
    outcome: str  # passed, failed, skipped, xfailed (known failure), xpassed (no longer fails)
    message: str = ""


@attrs.frozen(kw_only=True)
class ConformanceReport:
    """What `check_driver` found: one result per check."""

    driver: str
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return not any(r.outcome in ("failed", "xpassed") for r in self.results)

    def outcome(self, name: str) -> str:
        return next(r.outcome for r in self.results if r.name == name)

    def __str__(self) -> str:
        width = max((len(r.name) for r in self.results), default=0)
        lines = [f"conformance of driver {self.driver!r}: {'ok' if self.ok else 'FAILED'}"]
        for r in self.results:
            note = f"  {r.message}" if r.message else ""
            lines.append(f"  {r.outcome:8} {r.name.ljust(width)}{note}")
        return "\n".join(lines)


def run_check(item: Check, harness: Harness) -> CheckResult:
    """Run one check with its gating and the known-failures table applied."""
    reason = item.skip_reason(harness)
    if reason is not None:
        return CheckResult(name=item.name, outcome="skipped", message=reason)
    known = harness.subject.known_failures.get(item.name)
    try:
        item.function(harness)
    except Exception as exc:  # the check's own AssertionError, or the driver breaking
        message = str(exc) if isinstance(exc, ContractViolation) else f"{type(exc).__name__}: {exc}"
        if known is not None:
            return CheckResult(name=item.name, outcome="xfailed", message=known)
        return CheckResult(name=item.name, outcome="failed", message=message)
    if known is not None:
        return CheckResult(
            name=item.name,
            outcome="xpassed",
            message=f"listed as a known failure ({known}) but passes: take it off the list",
        )
    return CheckResult(name=item.name, outcome="passed")


def check_driver(
    factory: type,
    config: dict[str, Any],
    *,
    workdir: str | os.PathLike[str] | None = None,
    only: Sequence[str] | None = None,
    **options: Any,
) -> ConformanceReport:
    """Run the whole contract against driver class `factory` with settings `config`.

    For runners other than pytest. `options` are the other fields of `DriverUnderTest`
    (storage, unreachable_settings, invalid_settings, expected_capabilities, max_file_size,
    write_seam, read_seam, chunk_sizes, memory_per_transfer, known_failures, examples).
    Every check gets a scratch directory of its own under `workdir` (default: a temporary
    directory, removed afterwards).
    """
    import tempfile

    from archive_core.testing.harness import DriverUnderTest

    names = {c.name for c in CHECKS}
    for what, given in (("known_failures", options.get("known_failures", {})), ("only", only)):
        unknown = set(given or ()) - names
        if unknown:
            raise ValueError(f"{what} names checks the kit does not have: {sorted(unknown)}")
    options.setdefault("read_seam", default_read_seam(factory))
    subject = DriverUnderTest(driver_class=factory, settings=config, **options)
    results = []
    with tempfile.TemporaryDirectory(prefix="archive-core-kit-", dir=workdir) as scratch:
        for number, item in enumerate(CHECKS):
            if only is not None and item.name not in only:
                continue
            harness = Harness(subject, Path(scratch) / f"{number:02d}-{item.name}")
            try:
                results.append(run_check(item, harness))
            finally:
                harness.close()
    return ConformanceReport(driver=getattr(factory, "name", repr(factory)), results=tuple(results))


def default_read_seam(driver_class: type) -> tuple[Any, str] | None:
    """Where a driver reads sources, when the kit knows: ObjectStoreDriver reads them all
    through `transfer.RegularFile.readinto`."""
    from archive_core import transfer
    from archive_core.objectstore import ObjectStoreDriver

    if isinstance(driver_class, type) and issubclass(driver_class, ObjectStoreDriver):
        return (transfer.RegularFile, "readinto")
    return None


# --- helpers -------------------------------------------------------------------------------------


def _archive(plugin: Any, file_sets: list[Any]) -> tuple[list[Any], list[Any], str]:
    result = plugin.archive(file_sets, KIT_POLICY, f"kit-{uuid.uuid4().hex[:8]}")
    expect(
        isinstance(result, tuple) and len(result) == 4,
        f"archive() returned {type(result).__name__}, not Portal's 4-tuple",
    )
    archived, not_archived, error, extra = result
    expect(isinstance(error, str) and isinstance(extra, dict), "archive()'s 4-tuple is malformed")
    return list(archived), list(not_archived), error


def _config_of(h: Harness, settings: Any) -> Any:
    from archive_core.policies import structure

    config, problems = structure(
        h.driver_class.Config, settings, path=f"targets.{KIT_TARGET}.settings"
    )
    expect(config is not None, f"the kit's valid settings were refused: {'; '.join(problems)}")
    return config


def _tree(base: Path) -> set[str]:
    return {str(p.relative_to(base)) for p in base.rglob("*")}


def _expect_nothing_escaped(h: Harness, before: set[str]) -> None:
    """Every path new under `base` is inside the driver's storage or the kit's own folders."""
    storage = h.subject.local_storage
    allowed = [h.workdir] if storage is None else [h.workdir, storage]
    for name in sorted(_tree(h.base) - before):
        path = h.base / name
        if not any(path == a or a in path.parents for a in allowed):
            raise ContractViolation(f"a hostile name wrote {path}, outside the target")
    if storage is not None:
        real = os.path.realpath(storage)
        for directory, _, files in os.walk(storage):
            for file in files:
                resolved = os.path.realpath(os.path.join(directory, file))
                expect(
                    resolved == real or resolved.startswith(real + os.sep),
                    f"{os.path.join(directory, file)} resolves outside the storage",
                )


def _expect_nothing_stored_for(h: Harness, file_set: Any) -> None:
    """A file that failed left nothing behind: no object under its key, no file named for it."""
    from archive_core.objectstore import ObjectStoreDriver
    from archive_core.testing.calls import archive_item

    tag = f"_{file_set.item_id}_{file_set.sha1}"
    storage = h.subject.local_storage
    if storage is not None:
        for directory, _, files in os.walk(storage):
            leftover = [f for f in files if tag in f]
            if leftover:
                raise ContractViolation(
                    f"a failed file left {os.path.join(directory, leftover[0])}"
                )
    if not issubclass(h.driver_class, ObjectStoreDriver):
        return
    with h.driver() as driver:
        key = driver.key_for(archive_item(file_set, "0"))
        try:
            driver.get(key).close()
        except (ArchiveCoreError, FileNotFoundError, KeyError):
            return
        raise ContractViolation(
            f"put() left an object under {key!r} for a file whose upload failed: put must "
            "store nothing when reading its stream raises"
        )


def _expect_restorable(h: Harness, archived: list[Any], originals: list[Any]) -> None:
    if not h.supports(Capability.RESTORE):
        return
    by_sha1 = {fs.sha1: h.bytes_of(fs) for fs in originals}
    wanted = [h.elsewhere(fs) for fs in archived]
    h.plugin.restore(wanted, KIT_POLICY)
    for fs in wanted:
        expect(h.bytes_of(fs) == by_sha1[fs.sha1], f"{fs.files[0]} came back different")


_recording: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "archive_core_kit_io", default=None
)
_IO_EVENTS = (
    "open",
    "os.listdir",
    "os.scandir",
    "os.mkdir",
    "os.remove",
    "os.rename",
    "os.rmdir",
    "os.truncate",
    "os.chmod",
    "os.chown",
    "os.link",
    "os.symlink",
    "os.system",
    "os.posix_spawn",
    "os.exec",
    "os.fork",
    "subprocess.Popen",
    "socket.connect",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "sqlite3.connect",
    "shutil.copyfile",
    "shutil.rmtree",
)
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    events = _recording.get()
    if events is None or event not in _IO_EVENTS:
        return
    if event == "open" and args and _is_code(args[0]):
        return  # the import machinery reading a module is not the driver doing I/O
    shown = ", ".join(repr(a) for a in args[:2])
    events.append(f"{event}({shown})")


def _is_code(path: Any) -> bool:
    text = os.fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else ""
    if text.endswith((".py", ".pyc", ".so", ".pth", ".pyd")):
        return True
    return any(text.startswith(entry) for entry in sys.path if entry and os.path.isabs(entry))


@contextlib.contextmanager
def _recording_io() -> Iterator[list[str]]:
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)  # audit hooks cannot be removed; this one is idle when unused
        _hook_installed = True
    events: list[str] = []
    token = _recording.set(events)
    try:
        yield events
    finally:
        _recording.reset(token)


@contextlib.contextmanager
def _captured_logs() -> Iterator[list[str]]:
    """Every log record emitted meanwhile (any logger, any level), as formatted text."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect(level=logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
