"""archive-core tape support: an LTO library behind a narrow port (changer, drive, LTFS).

`open_library(config)` gives the port over the real tools or over the simulator; the values
and typed errors are re-exported here. Importing this package loads neither click nor the
backends.
"""

from archive_core_tape_ltfs.config import (
    DriveBinding,
    LibraryConfig,
    SimulatorSettings,
    Timeouts,
    load_library_config,
    open_library,
)
from archive_core_tape_ltfs.model import (
    Capacity,
    CheckMode,
    CheckRequest,
    CheckResult,
    DriveBay,
    DriveIdentity,
    DriveState,
    DriveStatus,
    FileLocation,
    FormatRequest,
    Inventory,
    LoadRequest,
    MountRequest,
    Slot,
    SlotKind,
    TapeAlerts,
    TransferRequest,
    UnloadRequest,
    VolumeInfo,
)
from archive_core_tape_ltfs.port import Changer, Clock, Drive, Library, LtfsVolume, Mount

__all__ = [
    "Capacity",
    "Changer",
    "CheckMode",
    "CheckRequest",
    "CheckResult",
    "Clock",
    "Drive",
    "DriveBay",
    "DriveBinding",
    "DriveIdentity",
    "DriveState",
    "DriveStatus",
    "FileLocation",
    "FormatRequest",
    "Inventory",
    "Library",
    "LibraryConfig",
    "LoadRequest",
    "LtfsVolume",
    "Mount",
    "MountRequest",
    "SimulatorSettings",
    "Slot",
    "SlotKind",
    "TapeAlerts",
    "Timeouts",
    "TransferRequest",
    "UnloadRequest",
    "VolumeInfo",
    "load_library_config",
    "open_library",
]
