"""The tape_ltfs archive driver: pools, cartridges, archive/restore through the tape port."""

from archive_core_tape_ltfs.driver.tape import TapeLtfsDriver

__all__ = ["TapeLtfsDriver"]
