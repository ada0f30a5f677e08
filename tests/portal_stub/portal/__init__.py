"""Stand-in for Cantemo Portal's top-level package (tests only; see tests/portal_stub/README.md)."""

__version__ = "0.0.0+stub"
