"""Runs the stand-in Portal web server with plugin apps loaded the way Portal loads them.

    python tests/portal_stub/serve.py --plugins-dir DIR --db PATH [--app NAME ...]
        [--enabled-apps archive-core] [--log FILE]

DIR holds the app directories (copies or symlinks, e.g. DIR/archive_core_portal). The server
gets a fresh SQLite database at PATH, the users `admin` (password `admin-pass`, in the Group
`portal_archive_settings`, not a superuser) and `viewer` (`viewer-pass`, no groups), and prints
one line `listening on http://127.0.0.1:PORT` on stdout once it accepts connections. The
environment (ARCHIVE_CORE_CONFIG ...) is the caller's. It serves until it is terminated.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from pathlib import Path

STUB_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"

ROLE = "portal_archive_settings"
# (username, password, the roles, i.e. Groups, the user holds)
USERS = (("admin", "admin-pass", (ROLE,)), ("viewer", "viewer-pass", ()))


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--plugins-dir",
        action="append",
        type=Path,
        default=[],
        help="a directory of app directories, added to portal.plugins (repeatable)",
    )
    parser.add_argument(
        "--app",
        action="append",
        dest="apps",
        default=[],
        help="an app directory name to install as portal.plugins.NAME (repeatable; default "
        "archive_core_portal)",
    )
    parser.add_argument(
        "--db", type=Path, default=os.environ.get("PORTAL_STUB_DB"), help="the SQLite file"
    )
    parser.add_argument(
        "--enabled-apps",
        default="archive-core",
        help="comma-separated app ids an admin has enabled (System > Apps); '' for none",
    )
    parser.add_argument("--log", type=Path, help="a file that also gets the server's log")
    arguments = parser.parse_args(argv)
    if arguments.db is None:
        parser.error("--db (or PORTAL_STUB_DB) is required")
    arguments.apps = arguments.apps or ["archive_core_portal"]
    return arguments


def prepare(arguments: argparse.Namespace) -> None:
    """Portal's start-up: settings, plugin folder, database, users, enabled apps, bootstrap."""
    sys.path.insert(0, str(STUB_DIR))
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal_site.settings"
    os.environ["PORTAL_STUB_DB"] = str(arguments.db)
    os.environ["PORTAL_STUB_APPS"] = ",".join(arguments.apps)
    if arguments.log is not None:
        os.environ["PORTAL_STUB_LOG"] = str(arguments.log)

    import portal.plugins
    from portal.utils.apps import enable_app

    portal.plugins.__path__.extend(str(path.resolve()) for path in arguments.plugins_dir)
    # Enabled before anything is imported: the admin enabled the app before this start.
    for app_id in filter(None, arguments.enabled_apps.split(",")):
        enable_app(app_id)

    import django

    django.setup()  # imports every INSTALLED_APPS package: the apps register themselves

    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    create_users()

    import importlib

    from portal.generic.plugin_interfaces import IPluginBootstrap
    from portal.pluginbase.core import plugins_implementing

    for name in arguments.apps:
        importlib.import_module(f"portal.plugins.{name}")
    for bootstrap in plugins_implementing(IPluginBootstrap):
        bootstrap.bootstrap()

    # Build the URLconf now, after the bootstrap registered the IPluginURL plugins, so that a
    # broken urls module stops the start-up with its traceback instead of failing a request.
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018


def create_users() -> None:
    from django.contrib.auth.models import Group, User

    for username, password, roles in USERS:
        user = User.objects.create_user(username=username, password=password)
        for role in roles:
            user.groups.add(Group.objects.get_or_create(name=role)[0])


def serve() -> None:
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    # Django's development server classes: threaded (a page's requests run side by side), and
    # a browser dropping a connection is one "Broken pipe" log line, not a traceback.
    server = ThreadedWSGIServer((HOST, 0), WSGIRequestHandler)
    server.set_app(WSGIHandler())
    print(f"listening on http://{HOST}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        prepare(arguments)
    except Exception:
        # Logging may not be set up yet: write the reason where the caller reads it.
        reason = traceback.format_exc()
        sys.stderr.write(reason)
        if arguments.log is not None:
            with arguments.log.open("a", encoding="utf-8") as log:
                log.write(reason)
        return 1
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, when run by hand
        serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
