"""Settings of the stand-in Portal web server.

Read from the environment serve.py sets: PORTAL_STUB_DB (the SQLite file), PORTAL_STUB_APPS
(comma-separated app directory names under portal.plugins) and PORTAL_STUB_LOG (a file that
gets a copy of the server's log).
"""

from __future__ import annotations

import os
from typing import Any

# Production-like, as Portal runs: no debug pages, and errors go to the log (stderr).
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SECRET_KEY = "portal-stub-not-a-secret-only-for-tests-0123456789abcdef"

PLUGIN_APPS = [name for name in os.environ.get("PORTAL_STUB_APPS", "").split(",") if name]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "portal",
    *(f"portal.plugins.{name}" for name in PLUGIN_APPS),
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal_site.urls"
WSGI_APPLICATION = "portal_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # Portal's own tags need no {% load %} in Portal's templates: same here.
            "builtins": ["portal.templatetags.portal_stub_tags"],
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PORTAL_STUB_DB", ":memory:"),
        # The server is threaded: let a writer wait for another's lock instead of failing.
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

# Django's default hasher takes a large fraction of a second per login by design; the stub's
# passwords are test fixtures, so a fast one keeps each login quick.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
}

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

_log_handlers: dict[str, dict[str, Any]] = {
    "stderr": {"class": "logging.StreamHandler", "formatter": "plain"},
}
if os.environ.get("PORTAL_STUB_LOG"):
    _log_handlers["file"] = {
        "class": "logging.FileHandler",
        "filename": os.environ["PORTAL_STUB_LOG"],
        "formatter": "plain",
    }

# Every log line (the request log, server errors with their tracebacks, the apps' own lines)
# goes to stderr and the log file, so a failing test can show what the server did.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": _log_handlers,
    "root": {"handlers": list(_log_handlers), "level": "INFO"},
    "loggers": {
        "django.server": {"handlers": list(_log_handlers), "level": "INFO", "propagate": False},
    },
}
