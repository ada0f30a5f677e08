"""The sftp driver passes the conformance kit, through ArchiveCorePlugin, on a real sshd."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from archive_core_sftp import _files, _pipeline, _wire
from archive_core_sftp.driver import SftpDriver

from archive_core import transfer
from archive_core.driver import Capability
from archive_core.testing import DriverContract
from drivers.sftp.tests.sshd import SshServer


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TestSftpConformance(DriverContract):
    @pytest.fixture
    def driver_class(self) -> type:
        return SftpDriver

    @pytest.fixture
    def driver_settings(self, storage: Path, sshd: SshServer) -> dict[str, Any]:
        # The server runs on this machine, so remote_root is the kit's local storage
        # directory: the kit's escape checks see the server's side too.
        return {
            "host": sshd.host,
            "port": sshd.port,
            "user": sshd.user,
            "remote_root": str(storage),
            "key_file": str(sshd.client_key),
            "known_hosts": str(sshd.known_hosts),
            "min_free_bytes": 0,
            "connect_timeout": 5,
        }

    @pytest.fixture
    def unreachable_settings(self, driver_settings: dict[str, Any]) -> dict[str, Any]:
        return {**driver_settings, "port": _closed_port()}

    @pytest.fixture
    def invalid_settings(self, storage: Path) -> list[tuple[dict[str, Any], str]]:
        base = {"host": "example.net", "remote_root": str(storage)}
        return [
            ({**base, "remote_root": "relative/path"}, "remote_root: must be an absolute path"),
            ({**base, "port": 0}, "port: must be a TCP port"),
            ({**base, "files_in_flight": 0}, "files_in_flight: must be between 1 and 64"),
            ({**base, "host_key_fingerprint": "MD5:ab"}, "host_key_fingerprint: must be a SHA256"),
            ({**base, "password": "hunter2"}, "password: secrets must be given by reference"),
            ({"remote_root": str(storage)}, "host is empty"),
        ]

    @pytest.fixture
    def expected_capabilities(self) -> frozenset[Capability]:
        return frozenset(
            {
                Capability.ARCHIVE,
                Capability.RESTORE,
                Capability.DELETE,
                Capability.VERIFY,
                Capability.BULK,
            }
        )

    @pytest.fixture
    def read_seam(self) -> tuple[Any, str]:
        return (transfer.RegularFile, "readinto")

    @pytest.fixture
    def write_seam(self) -> tuple[Any, str]:
        # One call per copy written to the server: the kit's files are small, so the
        # pipeline's (larger ones go through _files._write_all; test_files covers its faults).
        return (_pipeline, "_send_small")

    @pytest.fixture
    def chunk_sizes(self) -> tuple[int, ...]:
        return (_wire.MAX_CHUNK,)

    @pytest.fixture
    def memory_per_transfer(self) -> int:
        # Up to WINDOW writes or reads of MAX_CHUNK out at once, and the one being filled.
        return (_files.WINDOW + 1) * _wire.MAX_CHUNK
