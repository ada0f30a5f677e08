"""Portal app directory for archive-core; Portal imports it as `portal.plugins.archive_core_portal`.

Importing it only registers the app (registration.py). The archive plugin itself is loaded by
the bootstrap, and only while an admin has the app enabled.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    # Portal's app list shows the version of the archive-core actually installed in its venv.
    __version__ = version("archive-core")
except PackageNotFoundError:
    __version__ = "not installed"

from . import registration  # noqa: F401  (registers the app with Portal on import)
