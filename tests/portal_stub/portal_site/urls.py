"""URLs of the stand-in Portal: login, logout, a home page, and every IPluginURL plugin's URLs.

Portal builds its URLconf from the plugins registered by then, so the apps' bootstrap must
have run before this module is imported (serve.py sees to it).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, LogoutView
from django.urls import URLPattern, URLResolver, include, path, re_path
from django.views.generic import TemplateView
from portal.generic.plugin_interfaces import IPluginURL
from portal.pluginbase.core import plugins_implementing

urlpatterns: list[URLPattern | URLResolver] = [
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path(
        "",
        login_required(TemplateView.as_view(template_name="portal_stub/home.html")),
        name="home",
    ),
]

for plugin in plugins_implementing(IPluginURL):
    # `urlpattern` is a regular expression in Portal's plugins ('' or r'^myapp/'), hence re_path.
    # The namespace doubles as the app name, for a urls module that does not set `app_name`.
    urlpatterns.append(
        re_path(
            plugin.urlpattern, include((plugin.urls, plugin.namespace), namespace=plugin.namespace)
        )
    )
