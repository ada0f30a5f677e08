"""The library config: which backend, which devices, which timeouts (`factory` opens one).

The tape driver's own `Config` embeds a `LibraryConfig` as its `library` setting; the operator
CLI reads the same table from a TOML file (`--library FILE` or `ARCHIVE_CORE_TAPE_LIBRARY`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import attrs

from archive_core import ConfigError, setting

LIBRARY_ENV = "ARCHIVE_CORE_TAPE_LIBRARY"
BACKENDS = ("real", "simulator")

# A rewinding node (/dev/st0, /dev/st0l...) rewinds on close: opened while LTFS holds the drive
# it corrupts the tape, so the config never accepts one.
_REWINDING = re.compile(r"^/dev/st\d+[lma]?$")


def _backend(_instance: Any, _attribute: Any, value: str) -> None:
    if value not in BACKENDS:
        raise ValueError(f"must be one of {', '.join(BACKENDS)}")


def _positive(_instance: Any, _attribute: Any, value: float) -> None:
    if value <= 0:
        raise ValueError("must be more than 0")


def _not_rewinding(_instance: Any, _attribute: Any, value: str | None) -> None:
    if value and _REWINDING.match(value):
        raise ValueError(
            f"{value} is a rewinding tape node; give the non-rewinding one "
            f"(/dev/nst{value.removeprefix('/dev/st')}) or its /dev/tape/by-id/...-nst name"
        )


def _generation(_instance: Any, _attribute: Any, value: int) -> None:
    if not 5 <= value <= 10:
        raise ValueError("LTFS needs LTO-5 to LTO-10")


def _form(_instance: Any, _attribute: Any, value: str) -> None:
    if value not in ("FH", "HH"):
        raise ValueError("must be FH (full height) or HH (half height)")


@attrs.frozen(kw_only=True)
class DriveBinding:
    """One changer drive bay bound to its device nodes by the drive's serial number."""

    index: int = setting(help="The changer's data transfer element number (0 is the first).")
    serial: str = setting(
        help="The drive's serial number (sg_inq 'Unit serial number', tapeinfo SerialNumber). "
        "Device nodes are checked against it, so a renumbered /dev/sgN is never mistaken."
    )
    sg: str | None = setting(
        default=None,
        help="SCSI generic node of the drive for sg3-utils (prefer /dev/tape/by-id/...-sg). "
        "Default: found by serial in `ltfs -o device_list`. LTFS itself is given the serial.",
    )
    nst: str | None = setting(
        default=None,
        help="Non-rewinding tape node for mt (prefer /dev/tape/by-id/scsi-<id>-nst).",
        validator=_not_rewinding,
    )

    @property
    def ltfs_device(self) -> str:
        """What LTFS's sg backend is given: the serial, which survives sg renumbering."""
        return self.serial


@attrs.frozen(kw_only=True)
class Timeouts:
    """Seconds each kind of tool call may take before it counts as hung."""

    changer_move: float = setting(default=300.0, help="One mtx load/unload/transfer.")
    inventory: float = setting(default=1800.0, help="mtx inventory (robot rescans every slot).")
    status: float = setting(default=300.0, help="mtx status and drive queries.")
    ready: float = setting(default=300.0, help="A loaded cartridge becoming ready.")
    ready_new_cartridge: float = setting(
        default=7200.0,
        help="Readiness of a cartridge's first load in an LTO-9 drive (media optimisation).",
    )
    mount: float = setting(default=1800.0, help="ltfs mount, incl. a consistency check.")
    unmount: float = setting(default=1800.0, help="umount until the ltfs process has exited.")
    format: float = setting(default=7200.0, help="mkltfs (plus LTO-9 media optimisation).")
    check: float = setting(default=14400.0, help="ltfsck (a deep recovery takes long).")
    becoming_ready: float = setting(
        default=300.0, help="How long to retry while the library reports 'becoming ready'."
    )
    poll_interval: float = setting(default=5.0, help="Between readiness polls.")


@attrs.frozen(kw_only=True)
class SimulatedCartridge:
    """A cartridge the simulator puts in a new library."""

    barcode: str = setting(help="Barcode label, e.g. ABC001L9 or CLN001CU.")
    slot: int = setting(help="Slot it starts in.")
    generation: int | None = setting(default=None, help="Default: the drives' generation.")
    capacity_bytes: int | None = setting(default=None, help="Default: the generation's.")
    write_protected: bool = setting(default=False, help="Write-protect tab set.")
    new: bool = setting(default=True, help="Never loaded (LTO-9 media optimisation pending).")
    formatted: bool = setting(default=False, help="Already holds an LTFS volume.")
    uses: int = setting(default=50, help="Cleaning cartridges: uses left.")


@attrs.frozen(kw_only=True)
class SimulatorSettings:
    """Where the virtual library lives and what a new one looks like."""

    state_dir: Path = setting(help="Directory holding the virtual library's state.")
    slots: int = setting(default=24, help="Storage slots of a new library.", validator=_positive)
    import_export: int = setting(default=4, help="Import/export slots after the storage slots.")
    drives: int = setting(default=2, help="Drives of a new library.", validator=_positive)
    generation: int = setting(
        default=9, help="LTO generation of the drives.", validator=_generation
    )
    form: str = setting(default="FH", help="FH (full height) or HH (half height).", validator=_form)
    cartridges: tuple[SimulatedCartridge, ...] = setting(
        factory=tuple,
        help="Cartridges of a new library; default: a data cartridge in every other slot of "
        "the first half and one cleaning cartridge in the last storage slot.",
    )
    capacity_bytes: int | None = setting(
        default=None, help="Capacity of every data cartridge (default: the generation's native)."
    )
    seed: int = setting(default=0, help="Seed of randomly injected faults and jitter.")


@attrs.frozen(kw_only=True)
class LibraryConfig:
    """One tape library: a changer, its drives bound by serial, LTFS settings, timeouts."""

    backend: str = setting(
        default="real",
        help="'real' runs mtx/mt/sg3-utils/LTFS; 'simulator' a virtual library.",
        validator=_backend,
    )
    changer: str | None = setting(
        default=None,
        help="Changer SCSI generic node (prefer /dev/tape/by-id/scsi-<id>); real backend only.",
    )
    drives: tuple[DriveBinding, ...] = setting(
        factory=tuple, help="The drives, each bound to its changer index by serial."
    )
    mount_root: Path = setting(
        default=Path("/var/lib/archive-core/ltfs"),
        help="Each drive's LTFS volume is mounted at <mount_root>/drive<index>.",
    )
    work_directory: Path = setting(
        default=Path("/var/lib/archive-core/ltfs-work"),
        help="LTFS work directory (captured indexes, logs of the ltfs processes).",
    )
    ltfs_options: tuple[str, ...] = setting(
        factory=tuple,
        help="Extra `-o` options for ltfs, e.g. ['max_pool_size=1024'].",
        advanced=True,
    )
    unit_attention_retries: int = setting(
        default=3, help="Times a command is retried after a unit attention.", advanced=True
    )
    timeouts: Timeouts = setting(factory=Timeouts, help="Tool timeouts in seconds.")
    simulator: SimulatorSettings | None = setting(
        default=None, help="The virtual library; required when backend = 'simulator'."
    )

    def __attrs_post_init__(self) -> None:
        if self.backend == "simulator" and self.simulator is None:
            raise ValueError("backend 'simulator' needs a [simulator] table with state_dir")
        if self.backend == "real":
            if not self.changer:
                raise ValueError("backend 'real' needs the changer device")
            if not self.drives:
                raise ValueError("backend 'real' needs at least one drive binding")
        indexes = [d.index for d in self.drives]
        if len(set(indexes)) != len(indexes):
            raise ValueError("two drive bindings name the same changer index")

    def binding(self, index: int) -> DriveBinding | None:
        return next((d for d in self.drives if d.index == index), None)


def structure_library(raw: Any, *, path: str = "library", source: str | None = None):
    """A LibraryConfig from a parsed TOML table; ConfigError with every problem at once."""
    from archive_core import structure_settings

    config, problems = structure_settings(LibraryConfig, raw, path=path)
    if problems:
        raise ConfigError(problems, source=source)
    assert config is not None
    return config


def load_library_config(path: str | os.PathLike[str] | None = None) -> LibraryConfig:
    """Read the TOML file at `path` (or $ARCHIVE_CORE_TAPE_LIBRARY); its `[library]` table or,
    without one, the whole file is the library."""
    import tomllib

    where = path or os.environ.get(LIBRARY_ENV)
    if not where:
        raise ConfigError(
            [f"no library config: give --library FILE or set {LIBRARY_ENV}"], source=None
        )
    file = Path(where)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{file}: cannot be read ({exc.strerror})"], source=str(file)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{file}: not valid TOML ({exc})"], source=str(file)) from None
    raw = data.get("library", data)
    base = file.parent
    if isinstance(raw, dict) and isinstance(raw.get("simulator"), dict):
        state_dir = raw["simulator"].get("state_dir")
        if isinstance(state_dir, str) and not os.path.isabs(state_dir):
            raw = {**raw, "simulator": {**raw["simulator"], "state_dir": str(base / state_dir)}}
    return structure_library(raw, path="library" if "library" in data else "", source=str(file))
