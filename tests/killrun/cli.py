"""The command line of the kill trials: plan them, run them, print their summary."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.killrun.plan import BACKENDS, OPERATIONS, SCENARIOS, plan_trial, plan_trials
from tests.killrun.report import summary_table
from tests.killrun.trial import run_trials
from tests.pgserver import PostgresServer, PostgresUnavailable


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.killrun",
        description="SIGKILL trials of archive, restore and delete through the Portal face.",
    )
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all")
    parser.add_argument("--operation", choices=(*OPERATIONS, "all"), default="all")
    parser.add_argument("--replay", type=int, metavar="TRIAL_SEED", help="run one trial again")
    parser.add_argument(
        "--kill-target", choices=("parent", "child"), help="with --replay: what was killed"
    )
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep trial directories here")
    parser.add_argument("--verbose", action="store_true", help="notes and run times per trial")
    args = parser.parse_args(argv)

    backends = BACKENDS if args.backend == "both" else (args.backend,)
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    operations = OPERATIONS if args.operation == "all" else (args.operation,)
    if args.replay is not None:
        given = {"scenario": args.scenario, "operation": args.operation}
        plans = [
            plan_trial(
                args.replay,
                backend,
                kill_target=args.kill_target,
                **{k: v for k, v in given.items() if v != "all"},
            )
            for backend in backends
        ]
    else:
        plans = plan_trials(
            args.trials, args.seed, backends=backends, scenarios=scenarios, operations=operations
        )
    server = PostgresServer() if "postgresql" in {p.backend for p in plans} else None
    if server is not None:
        try:
            server.start()
        except PostgresUnavailable as exc:
            print(f"PostgreSQL trials cannot run here: {exc}", file=sys.stderr)
            return 2
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="killrun-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        reports = run_trials(
            plans,
            server=server,
            workdir=workdir,
            keep=args.keep is not None,
            out=sys.stdout,
            verbose=args.verbose,
        )
    finally:
        if server is not None:
            server.stop()
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(summary_table(reports))
    failing = [r for r in reports if r.violations]
    print(
        f"\n{len(reports)} trials in {time.monotonic() - started:.0f} s; "
        f"{len(failing)} with violations"
    )
    return 1 if failing else 0
