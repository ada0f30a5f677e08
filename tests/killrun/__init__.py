"""Kill -9 trials of the core's data-safety promises, with real processes and real files.

A trial builds a fresh site (one policy, two filesys targets with the `item` layout, the
catalog on SQLite or a fresh PostgreSQL database), runs one archive, restore or delete in a
Portal worker process (tests/kill_worker.py), SIGKILLs that worker, or one of its staging
children, once the operation has visibly progressed by a sampled amount, runs the operation
again to completion in a fresh process as Celery would, and checks every promise the core
makes about the outcome, reporting every violation rather than the first. Each trial is drawn
from its own seed, so a violation is replayed with `--replay SEED`.

    python -m tests.killrun --trials 120 --backend both --seed 1
    python -m tests.killrun --replay 123456789 --backend sqlite --keep /tmp/trial

Its modules, each importing only those above it: `text` (how findings are quoted) and `plan`
(what a trial does); `site` (site, batch, catalog reads), `disk` (what is on the roots) and
`processes` (worker runs, staging children); `checks` (promises shared with the race test);
`trial` (one trial, many trials); `report` and `cli` (the summary, the command line). Exported
here: what the kill and race tests use.
"""

from tests.killrun.checks import archived_state_problems
from tests.killrun.plan import TARGETS, KillPoint, plan_trial
from tests.killrun.site import Databases, Site, as_file_sets, build_site, write_manifest
from tests.killrun.trial import run_trial

__all__ = [
    "TARGETS",
    "Databases",
    "KillPoint",
    "Site",
    "archived_state_problems",
    "as_file_sets",
    "build_site",
    "plan_trial",
    "run_trial",
    "write_manifest",
]
