"""What a trial does, drawn from its seed: the kill point, the batch sizes, the re-run's job."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import attrs

from archive_core.transfer.stager._stager import PROCESS_MIN_FILES

TARGETS = ("disk0", "disk1")
SCENARIOS = ("inproc", "pooled")
OPERATIONS = ("archive", "restore", "delete")
BACKENDS = ("sqlite", "postgresql")


@attrs.frozen(kw_only=True)
class KillPoint:
    """Kill once `probe` (a count of visible progress) reaches `count`."""

    probe: str  # published | removed | restored | temporary | journal | intents
    count: int

    def __str__(self) -> str:
        return f"{self.probe}>={self.count}"


@attrs.frozen(kw_only=True)
class TrialPlan:
    """Everything a trial does, drawn from its seed: the same seed replays the same trial."""

    seed: int
    backend: str
    scenario: str
    operation: str
    small_files: int
    large_files: int
    kill_target: str  # parent | child (a staging process; pooled archive only)
    kill_point: KillPoint
    rerun_job: str  # same | new: the re-run keeps the killed run's job id, or gets another

    @property
    def files(self) -> int:
        return self.small_files + self.large_files

    def replay(self) -> str:
        """The command that runs this trial again."""
        return (
            f"python -m tests.killrun --replay {self.seed} --backend {self.backend} "
            f"--scenario {self.scenario} --operation {self.operation} "
            f"--kill-target {self.kill_target}"
        )

    def describe(self) -> str:
        return (
            f"seed={self.seed} backend={self.backend} scenario={self.scenario} "
            f"op={self.operation} files={self.files} kill={self.kill_target}@{self.kill_point} "
            f"rerun={self.rerun_job}-job"
        )


def plan_trial(
    seed: int,
    backend: str,
    *,
    scenario: str | None = None,
    operation: str | None = None,
    kill_target: str | None = None,
    kill_point: KillPoint | None = None,
) -> TrialPlan:
    """The trial of `seed`; scenario, operation, kill target and point are drawn unless given.

    Every draw is made whether or not its value is given, so a trial printed as (seed,
    scenario, operation, kill target) is replayed exactly by giving those four.
    """
    rng = random.Random(seed)
    drawn_scenario, drawn_operation = rng.choice(SCENARIOS), rng.choice(OPERATIONS)
    drawn_target = rng.choice(("parent", "child"))
    scenario = scenario or drawn_scenario
    operation = operation or drawn_operation
    if scenario == "pooled":
        small, large = rng.randint(PROCESS_MIN_FILES, PROCESS_MIN_FILES + 200), 0
    else:
        small, large = rng.randint(200, 400), 2
    files = small + large
    if kill_target is None:
        pooled_archive = scenario == "pooled" and operation == "archive"
        kill_target = drawn_target if pooled_archive else "parent"
    copies = files * len(TARGETS)
    if kill_target == "child":
        # Staging processes exist only while a target's batch runs: kill one mid-batch.
        point = KillPoint(probe="published", count=rng.randint(1, copies - 1))
    else:
        progress = {"archive": "published", "restore": "restored", "delete": "removed"}[operation]
        units = files if operation == "restore" else copies
        kinds = [progress, progress, "journal", "journal", "intents"]
        if large and operation != "delete":
            kinds += ["temporary", "temporary"]  # a large file caught mid-copy, O_DIRECT
        kind = rng.choice(kinds)
        count = 1 if kind in ("intents", "temporary") else rng.randint(1, units - 1)
        point = KillPoint(probe=kind, count=count)
    return TrialPlan(
        seed=seed,
        backend=backend,
        scenario=scenario,
        operation=operation,
        small_files=small,
        large_files=large,
        kill_target=kill_target,
        kill_point=kill_point or point,
        rerun_job=rng.choice(("same", "new")),
    )


def plan_trials(
    count: int,
    seed: int,
    *,
    backends: Sequence[str],
    scenarios: Sequence[str] = SCENARIOS,
    operations: Sequence[str] = OPERATIONS,
) -> list[TrialPlan]:
    """`count` trials spread evenly over every (operation, scenario, kill target, backend);
    the rest of each trial is drawn from its seed."""
    rng = random.Random(seed)
    cells = [
        (operation, scenario, target, backend)
        for operation, scenario in itertools.product(operations, scenarios)
        for target in (
            ("parent", "child") if (operation, scenario) == ("archive", "pooled") else ("parent",)
        )
        for backend in backends
    ]
    plans = []
    for n in range(count):
        operation, scenario, target, backend = cells[n % len(cells)]
        plans.append(
            plan_trial(
                rng.randrange(2**31),
                backend,
                scenario=scenario,
                operation=operation,
                kill_target=target,
            )
        )
    return plans
