"""The tape driver's target settings: the library, its pools and pool sets, write headroom.

```toml
[targets.tape.settings.library]
backend = "simulator"
simulator = { state_dir = "/var/lib/archive-core/tape-sim", capacity_bytes = 68719476736 }

[targets.tape.settings.pools.main]
media = "L9"
barcodes = ["A00000L9-A00099L9"]
scratch = ["A00050L9-A00099L9"]

[targets.tape.settings.pools.vault]
media = "LZ"                              # WORM
barcodes = ["W00000LZ-W00019LZ"]
scratch = ["W00000LZ-W00019LZ"]

[targets.tape.settings.pool_sets.two-copies]
pools = ["main", "vault"]                 # one copy on each
```
"""

from __future__ import annotations

from typing import Any

import attrs

from archive_core import at_least, between, setting
from archive_core_tape_ltfs.config import LibraryConfig
from archive_core_tape_ltfs.driver.feeding import ReadAhead
from archive_core_tape_ltfs.driver.pools import (
    CopyPlan,
    PoolSetSettings,
    PoolSettings,
    build_pools,
    policy_uuid,
    pool_problems,
)


def _some_pools(_instance: Any, _attribute: Any, value: dict) -> None:
    if not value:
        raise ValueError("name at least one pool")


@attrs.frozen(kw_only=True)
class TapeLtfsConfig:
    """One tape library and the pools of cartridges its policies write to."""

    library: LibraryConfig = setting(
        help="The library: real devices (changer, drives by serial) or the simulator."
    )
    pools: dict[str, PoolSettings] = setting(
        help="The pools by name: media type, barcodes, scratch cartridges.",
        validator=_some_pools,
    )
    pool_sets: dict[str, PoolSetSettings] = setting(
        factory=dict, help="Policies keeping one copy on each of several pools."
    )
    default_policy: str | None = setting(
        default=None,
        help="The pool or pool set written to by policies the site config defines itself "
        "(naming this target). Default: the only pool, when there is one.",
    )
    headroom_bytes: int = setting(
        default=10 * 2**30,
        help="Space kept free on every cartridge for LTFS's indexes: at least this, 1% of the "
        "cartridge, and twice its index.",
        validator=at_least(0),
    )
    sync_every_files: int = setting(
        default=100,
        help="Files written between index syncs: a crash loses at most that many files of "
        "the batch, which a re-run writes again.",
        validator=between(1, 100_000),
    )
    read_ahead: ReadAhead = setting(
        factory=ReadAhead,
        help="How sources are read ahead of the drive to keep it streaming: readers, memory "
        "per job and pool, segment size, small-file groups.",
    )
    lease_seconds: float = setting(
        default=180.0,
        help="How long a drive lease lasts without renewal (a dead worker's drive is free "
        "again after it).",
        advanced=True,
        validator=at_least(10),
    )
    drive_wait_seconds: float = setting(
        default=900.0,
        help="How long a job waits for a drive another worker holds.",
        advanced=True,
        validator=at_least(0),
    )

    def __attrs_post_init__(self) -> None:
        problems = pool_problems(self.pools)
        for name, pool_set in self.pool_sets.items():
            if name in self.pools:
                problems.append(f"pool_sets.{name}: a pool already has that name")
            unknown = [p for p in pool_set.pools if p not in self.pools]
            if unknown:
                problems.append(
                    f"pool_sets.{name}.pools: no pool named {', '.join(map(repr, unknown))}"
                )
            if len(set(pool_set.pools)) != len(pool_set.pools):
                problems.append(
                    f"pool_sets.{name}.pools: a pool is listed twice; each copy goes to a "
                    f"pool of its own"
                )
            if not pool_set.pools:
                problems.append(f"pool_sets.{name}.pools: name at least one pool")
        named = self.default_policy
        if named is not None and named not in self.pools and named not in self.pool_sets:
            problems.append(f"default_policy: no pool or pool set named {named!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def plans(self, target: str) -> dict[str, CopyPlan]:
        """Every policy this target offers, by pool or pool set name."""
        pools = build_pools(self.pools)
        plans = {
            name: CopyPlan(
                key=name,
                uuid=policy_uuid(target, name, p.uuid),
                name=p.name or f"Tape {target}: {name}",
                pools=(pools[name],),
                max_files=p.max_files,
                max_bytes=p.max_bytes,
            )
            for name, p in self.pools.items()
        }
        for name, s in self.pool_sets.items():
            plans[name] = CopyPlan(
                key=name,
                uuid=policy_uuid(target, name, s.uuid),
                name=s.name or f"Tape {target}: {name} ({len(s.pools)} copies)",
                pools=tuple(pools[p] for p in s.pools),
                max_files=s.max_files,
                max_bytes=s.max_bytes,
            )
        return plans

    def default_plan_key(self) -> str | None:
        if self.default_policy is not None:
            return self.default_policy
        return next(iter(self.pools)) if len(self.pools) == 1 and not self.pool_sets else None
