"""The summary of a run of trials: one table row per (operation, scenario, kill, backend)."""

from __future__ import annotations

import collections
from collections.abc import Sequence

from tests.killrun.trial import TrialReport


def summary_table(reports: Sequence[TrialReport]) -> str:
    cells: dict[tuple[str, str, str, str], list[TrialReport]] = collections.defaultdict(list)
    for report in reports:
        plan = report.plan
        cells[(plan.operation, plan.scenario, plan.kill_target, plan.backend)].append(report)
    head = (
        f"{'operation':<9} {'scenario':<8} {'kill':<6} {'backend':<10} {'trials':>6} "
        f"{'killed':>6} {'failing':>7} {'violations':>10}"
    )
    lines = [head, "-" * len(head)]
    for (operation, scenario, target, backend), group in sorted(cells.items()):
        lines.append(_row(operation, scenario, target, backend, group))
    lines.append("-" * len(head))
    lines.append(_row("all", "", "", "", reports))
    return "\n".join(lines)


def _row(
    operation: str, scenario: str, target: str, backend: str, group: Sequence[TrialReport]
) -> str:
    return (
        f"{operation:<9} {scenario:<8} {target:<6} {backend:<10} {len(group):>6} "
        f"{sum(r.outcome == 'killed' for r in group):>6} "
        f"{sum(bool(r.violations) for r in group):>7} "
        f"{sum(len(r.violations) for r in group):>10}"
    )
