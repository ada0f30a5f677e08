"""The conformance kit proves itself: the reference drivers pass, broken drivers are caught."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import pytest

from archive_core import transfer
from archive_core.driver import Capability, setting
from archive_core.errors import ArchiveCoreError
from archive_core.model import FileOutcome, Readiness
from archive_core.objectstore import ObjectStoreDriver
from archive_core.policies import PortalSettings
from archive_core.testing import (
    CHECKS,
    DriverContract,
    MemoryDriver,
    MinimalDriver,
    check_driver,
    create_bucket,
    faults,
)
from archive_core.testing import checks as checks_module
from archive_core.testing import memory as memory_module
from archive_core.testing.harness import MiB
from archive_core.testing.memory import drop_bucket

FULL = frozenset(
    {Capability.ARCHIVE, Capability.RESTORE, Capability.DELETE, Capability.VERIFY, Capability.BULK}
)


class TestMemoryDriver(DriverContract):
    """The complete reference driver passes every check, fault checks included."""

    @pytest.fixture
    def driver_class(self) -> type:
        return MemoryDriver

    @pytest.fixture
    def storage(self) -> Iterator[str]:
        bucket = create_bucket()
        yield bucket
        drop_bucket(bucket)

    @pytest.fixture
    def driver_settings(self, storage: str) -> dict[str, Any]:
        return {"bucket": storage}

    @pytest.fixture
    def unreachable_settings(self) -> dict[str, Any]:
        return {"bucket": "no-such-bucket"}

    @pytest.fixture
    def invalid_settings(self) -> list[tuple[dict[str, Any], str]]:
        return [
            ({}, "bucket: required setting missing"),
            ({"bucket": ""}, "bucket: must be a non-empty name"),
            ({"bucket": 3}, "bucket: expected a string"),
            ({"bucket": "b", "token": "plain-text"}, "token: secrets must be given by reference"),
        ]

    @pytest.fixture
    def expected_capabilities(self) -> frozenset[Capability]:
        return FULL

    @pytest.fixture
    def write_seam(self) -> tuple[Any, str]:
        return (memory_module._Upload, "write")

    @pytest.fixture
    def read_seam(self) -> tuple[Any, str]:
        return (transfer.RegularFile, "readinto")

    @pytest.fixture
    def chunk_sizes(self) -> tuple[int, ...]:
        return (1 * MiB,)  # the buffer put() copies its stream with


class TestMinimalDriver(TestMemoryDriver):
    """No optional capability: delete, verify and bulk checks are skipped, the rest pass."""

    @pytest.fixture
    def driver_class(self) -> type:
        return MinimalDriver

    @pytest.fixture
    def expected_capabilities(self) -> frozenset[Capability]:
        return frozenset({Capability.ARCHIVE, Capability.RESTORE})


class PlacingDriver(MemoryDriver):
    """Says where each copy sits (its bucket and object), as a tape driver says its block."""

    name = "placing"
    capabilities = MemoryDriver.capabilities | {Capability.PLACEMENT}

    def archive(self, request):
        for outcome in super().archive(request):
            if outcome.ok:
                where = {"bucket": self.config.bucket, "object": outcome.locator}
                outcome = attrs.evolve(outcome, placement=where)
            yield outcome


class TestPlacingDriver(TestMemoryDriver):
    """A driver that declares placement gets it back: the placement check passes too."""

    @pytest.fixture
    def driver_class(self) -> type:
        return PlacingDriver

    @pytest.fixture
    def expected_capabilities(self) -> frozenset[Capability]:
        return FULL | {Capability.PLACEMENT}


def test_a_driver_that_declares_placement_but_returns_none_is_caught() -> None:
    class Placeless(MemoryDriver):
        name = "placeless"
        capabilities = MemoryDriver.capabilities | {Capability.PLACEMENT}

    report = report_for(Placeless)
    check = "placement_comes_back_with_every_request_for_the_copy"
    assert report.outcome(check) == "failed", str(report)
    assert "archived without placement" in str(report)


def test_placement_is_checked_only_for_drivers_that_declare_it() -> None:
    report = report_for(MemoryDriver)
    check = "placement_comes_back_with_every_request_for_the_copy"
    assert report.outcome(check) == "skipped", str(report)


# --- the function form, and drivers that break the contract ------------------------------------


def report_for(driver: type, **options: Any):
    bucket = create_bucket()
    try:
        return check_driver(driver, {"bucket": bucket}, examples=3, **options)
    finally:
        drop_bucket(bucket)


def test_check_driver_passes_the_reference_driver_and_lists_every_check() -> None:
    report = report_for(
        MemoryDriver,
        unreachable_settings={"bucket": "nowhere"},
        write_seam=(memory_module._Upload, "write"),
        read_seam=(transfer.RegularFile, "readinto"),
    )
    assert report.ok, str(report)
    assert [r.name for r in report.results] == [c.name for c in CHECKS]
    assert report.outcome("invalid_settings_are_refused_with_their_path") == "skipped"
    assert "conformance of driver 'memory': ok" in str(report)


def test_capability_gating_skips_what_the_minimal_driver_does_not_declare() -> None:
    report = report_for(MinimalDriver)
    assert report.ok, str(report)
    skipped = {r.name: r.message for r in report.results if r.outcome == "skipped"}
    for name in (
        "delete_removes_the_copy",
        "verify_reads_back_what_was_archived",
        "a_bulk_batch_of_many_files_is_archived_in_one_call",
    ):
        assert "does not declare" in skipped[name]
    assert report.outcome("archive_then_restore_gives_back_equal_bytes_and_sha1") == "passed"


class LeakyDriver(MemoryDriver):
    """Shows its token in repr and in its readiness reason."""

    name = "leaky"

    def __repr__(self) -> str:
        token = self.config.token.reveal() if self.config.token else None
        return f"<LeakyDriver token={token}>"


class CarelessDriver(MemoryDriver):
    """Stores whatever it reads, without reading to the end (no sha1 check ever happens)."""

    name = "careless"

    def put(self, key: str, stream: BinaryIO, size: int | None) -> None:
        data = stream.read(10)
        with memory_module._lock:
            self._objects()[key] = data


class DirectWriteDriver(MemoryDriver):
    """Stores each chunk as it arrives: a failed upload leaves a partial object behind."""

    name = "directwrite"

    def put(self, key: str, stream: BinaryIO, size: int | None) -> None:
        with memory_module._lock:
            self._objects()[key] = b""
        while chunk := stream.read(64 * 1024):
            with memory_module._lock:
                self._objects()[key] += chunk


class EagerDriver(MemoryDriver):
    """Touches storage while being constructed."""

    name = "eager"

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        with open(os.devnull, "wb"):
            pass


class LyingRestoreDriver(MemoryDriver):
    """Reports every restore done, with the sha1 it was asked for, writing nothing."""

    name = "lying"

    def restore(self, request: Any) -> Iterator[Any]:
        from archive_core.model import FileOutcome

        for item in request.items:
            yield FileOutcome.success(item.key, locator=item.locator, sha1=item.sha1)


class OverwritingDriver(MemoryDriver):
    """Keys every copy by its sha1 alone: two items sharing bytes share one copy."""

    name = "overwriting"

    def key_for(self, item: Any) -> str:
        return item.sha1 or "none"


class EscapingDriver(MemoryDriver):
    """Restores by reading `locator` as a path relative to the current directory."""

    name = "escaping"

    def get(self, key: str) -> BinaryIO:
        return io.BytesIO(Path(key).read_bytes())


@pytest.mark.parametrize(
    ("driver", "check", "options"),
    [
        (LeakyDriver, "secrets_never_show", {}),
        (CarelessDriver, "archive_then_restore_gives_back_equal_bytes_and_sha1", {}),
        (EagerDriver, "construction_does_no_io", {}),
        (DirectWriteDriver, "a_truncated_read_is_caught_by_the_sha1_check", {}),
        (DirectWriteDriver, "partial_failure_is_returned_as_not_archived", {}),
        (LyingRestoreDriver, "restore_of_a_missing_copy_raises_an_admin_readable_error", {}),
        (OverwritingDriver, "items_sharing_bytes_get_copies_of_their_own", {}),
        (MemoryDriver, "declares_its_metadata_without_io", {"expected_capabilities": frozenset()}),
    ],
)
def test_the_kit_catches_a_driver_that_breaks_the_contract(
    driver: type, check: str, options: dict[str, Any]
) -> None:
    report = report_for(driver, only=[check], **options)
    assert not report.ok
    assert report.outcome(check) == "failed", str(report)


def test_a_secret_in_the_config_is_checked_for_leaks_everywhere() -> None:
    # MemoryDriver's token is secret: the check must have had something to look for.
    report = report_for(LeakyDriver, only=["secrets_never_show"])
    message = report.results[0].message
    assert "the secret setting token was shown" in message
    assert "kit-secret-" not in message  # the report itself never repeats the value


def test_hostile_external_ids_are_caught_when_a_driver_reads_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    report = report_for(EscapingDriver, only=["hostile_external_ids_never_read_outside_the_target"])
    # The core refuses '..' before the driver sees it, so even this driver reads nothing.
    assert report.ok, str(report)


def test_known_failures_become_expected_and_a_fixed_one_must_be_taken_off() -> None:
    leaky = report_for(
        LeakyDriver,
        only=["secrets_never_show"],
        known_failures={"secrets_never_show": "the repr shows the token (issue 12)"},
    )
    assert leaky.ok and leaky.outcome("secrets_never_show") == "xfailed"
    fixed = report_for(
        MemoryDriver,
        only=["secrets_never_show"],
        known_failures={"secrets_never_show": "was broken once"},
    )
    assert not fixed.ok and fixed.outcome("secrets_never_show") == "xpassed"
    with pytest.raises(ValueError, match="not_a_check"):
        report_for(MemoryDriver, known_failures={"not_a_check": "typo"})
    with pytest.raises(ValueError, match="only names checks the kit does not have"):
        report_for(MemoryDriver, only=["secrets_never_shown"])


def test_pytest_mixin_gates_capabilities_and_applies_known_failures(pytester: Any) -> None:
    pytester.makepyfile(
        test_vendor="""
        import pytest
        from archive_core.testing import DriverContract, MinimalDriver, create_bucket

        class LeakyMinimal(MinimalDriver):
            name = "leakyminimal"
            def __repr__(self):
                return f"<{self.config.token.reveal() if self.config.token else None}>"

        class TestVendor(DriverContract):
            known_failures = {"test_secrets_never_show": "repr shows the token"}

            @pytest.fixture
            def driver_class(self):
                return LeakyMinimal

            @pytest.fixture
            def storage(self):
                return create_bucket()

            @pytest.fixture
            def driver_settings(self, storage):
                return {"bucket": storage}

            @pytest.fixture
            def examples(self):
                return 2
        """
    )
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    # delete (twice), verify, bulk, placement; unreachable, invalid, the write seam, part
    # sizes, memory
    gated = 5 + 5
    result.assert_outcomes(passed=len(CHECKS) - gated - 1, skipped=gated, xfailed=1)


def test_a_known_failure_naming_no_test_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match="test_does_not_exist"):

        class Mistyped(DriverContract):
            known_failures = {"test_does_not_exist": "typo"}


# --- drivers the core's repairs would hide: caught by the checks that call them directly ---------


class ForgetfulDriver(MemoryDriver):
    """Reports on every file but the last of each batch."""

    name = "forgetful"

    def archive(self, request: Any) -> Iterator[FileOutcome]:
        yield from list(super().archive(request))[:-1]


class EchoingDriver(MemoryDriver):
    """Reports each file twice."""

    name = "echoing"

    def archive(self, request: Any) -> Iterator[FileOutcome]:
        for outcome in super().archive(request):
            yield outcome
            yield outcome


class StrangerDriver(MemoryDriver):
    """Reports a file the request never held, besides the real ones."""

    name = "stranger"

    def stat(self, request: Any) -> Iterator[FileOutcome]:
        yield from super().stat(request)
        yield FileOutcome.failure("not-asked-for", "no such copy")


class BatchRaisingDriver(MemoryDriver):
    """Raises for the whole batch when one file of it is missing."""

    name = "batchraising"

    def archive(self, request: Any) -> Iterator[FileOutcome]:
        for item in request.items:
            if not any(os.path.exists(source) for source in item.sources):
                raise ArchiveCoreError(f"{item.sources[0]} is missing")
        yield from super().archive(request)


class TerseDriver(MemoryDriver):
    """Reports failures without saying why."""

    name = "terse"

    def archive(self, request: Any) -> Iterator[FileOutcome]:
        for outcome in super().archive(request):
            yield outcome if outcome.ok else attrs.evolve(outcome, error=None)


class RetrylessDriver(MemoryDriver):
    """Wraps whatever its upload raised into an ArchiveCoreError, losing `retryable`."""

    name = "retryless"

    def put(self, key: str, stream: BinaryIO, size: int | None) -> None:
        try:
            super().put(key, stream, size)
        except Exception as exc:
            raise ArchiveCoreError(f"upload of {key} failed: {exc}") from exc


class SwallowingDriver(MemoryDriver):
    """Catches what reading its stream raised, and stores what it read so far."""

    name = "swallowing"

    def put(self, key: str, stream: BinaryIO, size: int | None) -> None:
        upload = io.BytesIO()
        with contextlib.suppress(Exception):
            shutil.copyfileobj(stream, upload)
        with memory_module._lock:
            self._objects()[key] = upload.getvalue()


#: The part size of PartDroppingDriver: no file of the other checks is a multiple of it.
PART = 768 * 1024


class PartDroppingDriver(MemoryDriver):
    """Uploads in parts, and loses a last part that is exactly full (an off-by-one)."""

    name = "partdropping"

    def put(self, key: str, stream: BinaryIO, size: int | None) -> None:
        parts = []
        part = stream.read(PART)
        while part:
            following = stream.read(PART)
            if following or len(part) < PART:
                parts.append(part)
            part = following
        with memory_module._lock:
            self._objects()[key] = b"".join(parts)


@pytest.mark.parametrize(
    ("driver", "check", "options"),
    [
        (ForgetfulDriver, "each_operation_yields_exactly_one_outcome_per_item", {}),
        (EchoingDriver, "each_operation_yields_exactly_one_outcome_per_item", {}),
        (StrangerDriver, "each_operation_yields_exactly_one_outcome_per_item", {}),
        (BatchRaisingDriver, "each_operation_yields_exactly_one_outcome_per_item", {}),
        (TerseDriver, "a_failure_says_why_in_its_outcome", {}),
        (RetrylessDriver, "a_transient_read_error_is_retried_or_reported_retryable", {}),
        (SwallowingDriver, "put_lets_out_what_its_stream_raised", {}),
        (PartDroppingDriver, "files_at_each_part_boundary_round_trip", {"chunk_sizes": [PART]}),
    ],
)
def test_a_driver_the_core_would_repair_is_caught_by_calling_it_directly(
    driver: type, check: str, options: dict[str, Any]
) -> None:
    report = report_for(driver, only=[check], **options)
    assert report.outcome(check) == "failed", str(report)


@pytest.mark.parametrize(
    ("driver", "said"),
    [
        (ForgetfulDriver, "archive() reported nothing for 1 of 4 items (keys 'wrong')"),
        (EchoingDriver, "archive() reported key 'good0' twice"),
        (StrangerDriver, "stat() reported key 'not-asked-for', which is not in its request"),
        (BatchRaisingDriver, "archive() raised ArchiveCoreError"),
    ],
)
def test_the_one_outcome_check_says_which_rule_the_driver_broke(driver: type, said: str) -> None:
    check = "each_operation_yields_exactly_one_outcome_per_item"
    [result] = report_for(driver, only=[check]).results
    assert said in result.message


@pytest.mark.parametrize("driver", [EchoingDriver, StrangerDriver, TerseDriver, RetrylessDriver])
def test_through_the_portal_face_alone_the_core_hides_those_faults(driver: type) -> None:
    # Why the direct checks exist: these drivers pass the checks through the face, where the
    # core drops repeated and unknown outcomes and gives a failure its reason.
    faced = ["archive_then_restore_gives_back_equal_bytes_and_sha1"]
    faced.append("partial_failure_is_returned_as_not_archived")
    report = report_for(driver, only=faced)
    assert report.ok, str(report)


def test_the_retryable_check_looks_at_retryable_not_only_at_the_message() -> None:
    check = "a_transient_read_error_is_retried_or_reported_retryable"
    [result] = report_for(RetrylessDriver, only=[check]).results
    assert "without retryable=True" in result.message
    assert report_for(MemoryDriver, only=[check]).outcome(check) == "passed"


def test_a_put_that_swallows_its_streams_error_is_named_with_the_error() -> None:
    check = "put_lets_out_what_its_stream_raised"
    [result] = report_for(SwallowingDriver, only=[check]).results
    assert "put() returned normally after reading its stream raised" in result.message
    assert "Checksum mismatch" in result.message


def test_the_put_check_applies_only_to_object_store_drivers() -> None:
    from archive_core_filesys.driver import FilesysDriver

    assert not issubclass(FilesysDriver, ObjectStoreDriver)
    gate = next(c for c in CHECKS if c.name == "put_lets_out_what_its_stream_raised").gate
    assert gate is not None

    class Subject:
        driver_class = FilesysDriver
        driver_name = "filesys"

    assert "is not an ObjectStoreDriver" in (gate(Subject()) or "")  # type: ignore[arg-type]


def test_the_fault_checks_files_span_a_declared_part(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    media = checks_module.Harness.media

    def recording(self: Any, name: str, content: bytes | None = None, **kwargs: Any) -> Any:
        sizes.append(len(content) if content is not None else kwargs.get("size", 0))
        return media(self, name, content, **kwargs)

    monkeypatch.setattr(checks_module.Harness, "media", recording)
    only = ["a_failing_write_fails_only_that_file", "a_truncated_read_is_caught_by_the_sha1_check"]
    report = report_for(
        MemoryDriver,
        only=only,
        chunk_sizes=[PART],
        write_seam=(memory_module._Upload, "write"),
    )
    assert report.ok, str(report)
    assert min(sizes) > PART


# --- limits: memory per transfer, a hung probe, two workers at once -----------------------------


@attrs.frozen(kw_only=True)
class DirectoryConfig:
    location: str = setting(help="Directory the copies are kept in.")


class DirectoryDriver(ObjectStoreDriver):
    """Keeps copies as files, streamed through a 1 MiB buffer: bounded memory per transfer."""

    name = "directory"
    Config = DirectoryConfig

    def put(self, key: str, stream: BinaryIO, size: int | None) -> None:
        path = os.path.join(self.config.location, key)
        temp = f"{path}.{os.urandom(8).hex()}.uploading"
        try:
            with open(temp, "wb") as out:
                shutil.copyfileobj(stream, out, 1 * MiB)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        os.replace(temp, path)

    def get(self, key: str) -> BinaryIO:
        return open(os.path.join(self.config.location, key), "rb")

    def remove(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.config.location, key))


class BufferingDriver(DirectoryDriver):
    """Reads the whole stream into memory before writing it (what an SDK given a stream it
    cannot seek may do)."""

    name = "buffering"

    def put(self, key: str, stream: BinaryIO, size: int | None) -> None:
        data = stream.read()
        with open(os.path.join(self.config.location, key), "wb") as out:
            out.write(data)


MEMORY = "a_large_transfer_holds_bounded_memory"


def test_a_driver_streaming_in_bounded_parts_passes_the_memory_check(tmp_path: Path) -> None:
    report = check_driver(
        DirectoryDriver, {"location": str(tmp_path)}, only=[MEMORY], memory_per_transfer=2 * MiB
    )
    assert report.ok, str(report)


def test_a_driver_whose_memory_grows_with_the_file_is_refused(tmp_path: Path) -> None:
    report = check_driver(
        BufferingDriver, {"location": str(tmp_path)}, only=[MEMORY], memory_per_transfer=2 * MiB
    )
    [result] = report.results
    assert result.outcome == "failed", str(report)
    assert "archiving a 72 MiB file held" in result.message
    assert "grows with the file's size" in result.message


class ProbingOnStartDriver(MemoryDriver):
    """Asks its storage whether it answers while it is being built, in the caller's thread."""

    name = "probingonstart"

    def __init__(self, config: Any, context: Any) -> None:
        super().__init__(config, context)
        self.check_ready()


HUNG = "a_hung_readiness_probe_is_not_ready_within_the_timeout"


def test_a_driver_that_probes_while_it_is_built_hangs_is_ready_and_is_caught() -> None:
    # The core runs check_ready() in a thread of its own with a deadline, but builds the
    # driver in the caller's thread: a probe in __init__ escapes the deadline.
    report = report_for(ProbingOnStartDriver, only=[HUNG])
    [result] = report.results
    assert result.outcome == "failed", str(report)
    assert "is_ready() gave no answer within" in result.message


_storage_answers = threading.Event()


class HangingProbeDriver(MemoryDriver):
    """Waits, in check_ready(), for a bucket that does not exist to answer."""

    name = "hangingprobe"

    def probe(self) -> Readiness:
        if self.config.bucket == "nowhere":
            _storage_answers.wait()
        return super().probe()


def test_a_probe_that_waits_on_unreachable_storage_is_caught_calling_it_directly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check = "not_ready_with_a_reason_when_unreachable"
    monkeypatch.setattr(checks_module, "READY_TIMEOUT_SECONDS", 0.2)
    try:
        [result] = report_for(
            HangingProbeDriver, only=[check], unreachable_settings={"bucket": "nowhere"}
        ).results
    finally:
        _storage_answers.set()
    assert result.outcome == "failed"
    assert "check_ready() gave no answer within 0.2 s" in result.message


def test_the_kits_probe_deadline_is_portals_default_ready_timeout() -> None:
    default = attrs.fields(PortalSettings).ready_timeout_seconds.default
    assert default == checks_module.READY_TIMEOUT_SECONDS


_uploads_meet = threading.Barrier(2, timeout=10)
_uploads_looked = threading.Barrier(2, timeout=10)
_uploading: set[str] = set()


class ExclusiveDriver(MemoryDriver):
    """Refuses a second upload of a key while one is in flight (the vendor API's lock).

    Each upload first waits for the other site's upload of the same file, and neither goes
    on before both have looked for the other's: the two overlap as they do when two busy
    workers archive one batch, however the threads are scheduled (without the second
    meeting, a loaded machine could let the first upload finish before the second looked).
    """

    name = "exclusive"

    def put(self, key: str, stream: BinaryIO, size: int | None) -> None:
        _uploads_meet.wait()
        with memory_module._lock:
            taken = key in _uploading
            _uploading.add(key)
        _uploads_looked.wait()
        if taken:
            raise ArchiveCoreError(f"another upload of {key} is in progress")
        try:
            super().put(key, stream, size)
        finally:
            with memory_module._lock:
                _uploading.discard(key)


TWO = "two_sites_archiving_the_same_files_at_once_agree"


def test_a_driver_that_cannot_take_two_workers_at_once_is_caught() -> None:
    [result] = report_for(ExclusiveDriver, only=[TWO]).results
    assert result.outcome == "failed"
    assert "of two archiving at once failed" in result.message
    assert "another upload of" in result.message


def test_two_workers_at_once_on_a_local_directory_leave_one_file_per_file(tmp_path: Path) -> None:
    report = check_driver(
        DirectoryDriver, {"location": str(tmp_path)}, storage=tmp_path, only=[TWO]
    )
    assert report.ok, str(report)


# --- where the kit looks ---------------------------------------------------------------------


def test_the_kit_never_walks_a_local_folder_named_like_the_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bucket = create_bucket(f"kit-{os.urandom(4).hex()}")
    try:
        (tmp_path / bucket).mkdir()
        (tmp_path / bucket / "stray").symlink_to("/etc/passwd")  # resolves outside it
        report = check_driver(
            MemoryDriver,
            {"bucket": bucket},
            storage=bucket,
            only=["hostile_names_never_escape_the_target"],
        )
    finally:
        drop_bucket(bucket)
    assert report.ok, str(report)


def test_only_an_absolute_existing_directory_counts_as_local_storage(tmp_path: Path) -> None:
    from archive_core.testing.harness import local_directory

    assert local_directory(tmp_path) == tmp_path
    assert local_directory(str(tmp_path)) == tmp_path
    assert local_directory(tmp_path / "missing") is None
    assert local_directory(Path("kit-bucket")) is None
    assert local_directory("kit-bucket") is None
    assert local_directory(None) is None


# --- the fault wrappers on their own -----------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.written.append(bytes(data))
        return len(data)


def test_fail_on_call_fails_exactly_the_nth_call_and_restores_the_seam() -> None:
    sink = Sink()
    original = Sink.write
    with faults.injected(Sink, "write", faults.fail_on_call(2)) as fault:
        sink.write(b"a")
        with pytest.raises(OSError, match="injected"):
            sink.write(b"b")
        sink.write(b"c")
    assert fault.calls == 3 and sink.written == [b"a", b"c"]
    assert Sink.write is original


def test_transient_fails_the_first_calls_then_passes() -> None:
    calls = faults.transient(failures=2)(lambda: "ok")
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            calls()
    assert calls() == "ok"


def test_truncate_ends_reads_early_for_read_and_readinto(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    cut = faults.truncate(after=30)
    with faults.injected(transfer.RegularFile, "readinto", cut), transfer.open_regular(path) as f:
        assert transfer.hash_stream(f).size == 30
    stream = io.BytesIO(b"y" * 100)
    with faults.injected(stream, "read", faults.truncate(after=40)):
        assert len(stream.read(25)) + len(stream.read(25)) + len(stream.read(25)) == 40
    assert stream.read() == b"y" * 50  # the object's own method is back


def test_an_inherited_method_patched_on_a_subclass_is_inherited_again() -> None:
    class Child(Sink):
        pass

    with faults.injected(Child, "write", faults.fail_on_call(1)):
        assert "write" in Child.__dict__
    assert "write" not in Child.__dict__ and Child.write is Sink.write
