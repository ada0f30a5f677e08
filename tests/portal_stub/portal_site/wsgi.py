"""WSGI entry of the stand-in Portal; serve.py prepares the plugins before it loads this."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal_site.settings")

application = get_wsgi_application()
