"""Prometheus metrics from several worker processes, added up by one exporter."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .sites import POLICY, filesys_site

CLI = [sys.executable, "-m", "archive_core.cli"]


def _env(multiproc: Path) -> dict[str, str]:
    return {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}


def _archive(config: Path, env: dict[str, str], *paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "--config", str(config), "archive", "--policy", POLICY, *map(str, paths)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _workers_archived(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Two worker processes each archive a file; a third fails one whose source is gone."""
    config, _roots = filesys_site(tmp_path)
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    env = _env(multiproc)
    for n, size in enumerate((1000, 3000)):
        source = tmp_path / f"f{n}.bin"
        source.write_bytes(os.urandom(size))
        done = _archive(config, env, source)
        assert done.returncode == 0, done.stderr
    gone = tmp_path / "gone.bin"
    gone.write_bytes(b"x")
    failing = subprocess.run(
        [
            *CLI,
            "--config",
            str(config),
            "verify",
            "--policy",
            POLICY,
            f"filesys://disk0/never-archived_{'0' * 40}.bin",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failing.returncode == 1, failing.stderr
    return config, env


def test_the_exporter_adds_up_every_worker_process(tmp_path):
    config, env = _workers_archived(tmp_path)
    shown = subprocess.run(
        [*CLI, "--config", str(config), "metrics", "show"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    labels = f'operation="archive",policy="{POLICY}",result="ok",target="disk0"'
    assert f"archive_core_files_total{{{labels}}} 2.0" in text, text
    assert (
        f'archive_core_bytes_total{{operation="archive",policy="{POLICY}",target="disk0"}} 4000.0'
        in text
    )
    assert (
        f'archive_core_failures_total{{kind="permanent",operation="verify",policy="{POLICY}",'
        f'target="disk0"}} 1.0'
    ) in text, text
    assert (
        f'archive_core_job_duration_seconds_count{{operation="archive",policy="{POLICY}"}} 2.0'
        in text
    )
    assert f'archive_core_unverified_copies{{policy="{POLICY}",target="disk0"}} 2.0' in text
    assert f'archive_core_policy_ready{{policy="{POLICY}"}} 1.0' in text


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_metrics_serve_answers_a_scrape(tmp_path):
    config, env = _workers_archived(tmp_path)
    port = _free_port()
    server = subprocess.Popen(
        [*CLI, "--config", str(config), "metrics", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    body = r.read().decode()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()
                assert time.monotonic() < deadline, "the exporter never answered"
                time.sleep(0.1)
        assert "archive_core_files_total" in body and "archive_core_copies" in body
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_metrics_directory_that_is_missing_never_fails_a_job(tmp_path):
    config, _roots = filesys_site(tmp_path)
    source = tmp_path / "f.bin"
    source.write_bytes(os.urandom(100))
    done = _archive(config, _env(tmp_path / "no-such-directory"), source)
    assert done.returncode == 0, done.stderr
    assert "metrics are off in this process" in done.stderr
