"""A Portal worker SIGKILLed mid-archive, mid-restore or mid-delete (or one of its staging
processes killed), then run again to completion, leaves exactly what the core promises.

A CI sample of the trials in tests/killrun/, each with a fixed kill point: every operation,
both archive paths (in-process and pooled), a staging process killed once, split between
SQLite and PostgreSQL. The long run draws hundreds over every combination:
`python -m tests.killrun --trials 120 --backend both --seed 1`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.killrun import Databases, KillPoint, plan_trial, run_trial

pytestmark = pytest.mark.slow

# seed, backend, scenario, operation, kill target, kill point. Only archive has a pooled path
# (staging processes); restore and delete of a big batch differ from a small one only in size,
# and the inproc batches (a few hundred files) already cross the journal's 256-row groups.
SAMPLE = [
    # A large file caught mid-copy: named temporary file, O_DIRECT.
    (101, "sqlite", "inproc", "archive", "parent", KillPoint(probe="temporary", count=1)),
    # A staging process of the pool killed under its parent, mid-task.
    (102, "sqlite", "pooled", "archive", "child", KillPoint(probe="published", count=300)),
    (104, "sqlite", "inproc", "delete", "parent", KillPoint(probe="removed", count=250)),
    # Right after a group commit of the journal; the staging processes are orphaned.
    (105, "postgresql", "pooled", "archive", "parent", KillPoint(probe="journal", count=1500)),
    # A large file caught mid-restore, in its destination folder.
    (107, "postgresql", "inproc", "restore", "parent", KillPoint(probe="temporary", count=1)),
    # Mid-way through the second target, right after a group commit of the journal.
    (108, "postgresql", "inproc", "delete", "parent", KillPoint(probe="journal", count=400)),
]


@pytest.mark.parametrize(
    ("seed", "backend", "scenario", "operation", "kill_target", "kill_point"),
    [
        pytest.param(
            *case,
            id=f"{case[3]}-{case[2]}-{case[4]}-{case[1]}",
            marks=[pytest.mark.postgresql] if case[1] == "postgresql" else [],
        )
        for case in SAMPLE
    ],
)
def test_operation_killed_mid_way_then_run_again_keeps_every_promise(
    seed: int,
    backend: str,
    scenario: str,
    operation: str,
    kill_target: str,
    kill_point: KillPoint,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    server = request.getfixturevalue("postgresql_server") if backend == "postgresql" else None
    plan = plan_trial(
        seed,
        backend,
        scenario=scenario,
        operation=operation,
        kill_target=kill_target,
        kill_point=kill_point,
    )
    report = run_trial(plan, tmp_path / "trial", Databases(server))
    assert report.violations == (), f"{report.line()}\n" + "\n".join(report.violations)
    # Checked last: a trial that was never killed proves less, but its findings still count.
    assert report.outcome == "killed", f"the kill point was never reached: {report.line()}"
