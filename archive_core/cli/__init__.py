"""The `archive-core` command: inspect drivers and policies, and act through the Portal face.

One module per group of commands; importing this package registers them all on `main`.
"""

from archive_core.cli import catalog, config, files, inspection, integrity  # noqa: F401
from archive_core.cli.base import EXIT_FAILED, EXIT_USAGE, CliFileSet, main

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "CliFileSet", "main"]
