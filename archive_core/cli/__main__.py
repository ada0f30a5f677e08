"""`python -m archive_core.cli`: the `archive-core` command."""

from archive_core.cli import main

main()
