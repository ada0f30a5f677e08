"""The stand-in Portal web server and browser harness behave like Portal where the app relies on it.

The pages come from two throw-away apps written to the temp dir, not from archive-core's app
(whose pages have tests of their own): `stubcheck`, shaped like Cantemo's reference archive
plugin (an IPluginURL plugin, a CView guarded by HasAnyRole, a template that `themeextends`
Portal's admin frame, two IPluginBlock entries inside `{% permissionrequired %}`), and
`stubboot`, which has no URLs and registers its one block from its bootstrap, only while
enabled, as archive-core's app loads its plugin.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.portal_web import (
    ADMIN,
    VIEWER,
    browser,
    follow,
    http_status,
    login,
    logout,
    running_portal,
    screenshot,
)

STUBCHECK = {
    "__init__.py": '''
        """A throw-away Portal app for the stand-in's own tests."""

        from . import plugin  # noqa: F401
    ''',
    "plugin.py": """
        from portal.generic.plugin_interfaces import IPluginBlock, IPluginURL
        from portal.pluginbase.core import Plugin, implements


        class StubCheckUrls(Plugin):
            implements(IPluginURL)

            def __init__(self):
                self.name = "stubcheck URLs"
                self.urls = "portal.plugins.stubcheck.urls"
                self.urlpattern = ""
                self.namespace = "stubcheck"


        class StubCheckBlock(Plugin):
            implements(IPluginBlock)

            def __init__(self, name, template):
                self.name = name
                self.plugin_guid = "0d1f7a52-6d3b-4d0e-9d7e-6a3f2b1c0a99:" + name
                self.template = template

            def return_string(self, tagname, *args):
                return {"guid": self.plugin_guid, "template": self.template}


        StubCheckUrls()
        StubCheckBlock("NavigationArchivePlugin", "stubcheck/navigation.html")
        StubCheckBlock("admin_left_panel_inside_archive", "stubcheck/left_panel.html")
    """,
    "urls.py": """
        from django.urls import path

        from .views import StubCheckSettings

        urlpatterns = [
            path("stubcheck/settings/", StubCheckSettings.as_view(), name="settings"),
        ]
    """,
    "views.py": """
        from rest_framework.response import Response

        from portal.generic.baseviews import CView
        from portal.generic.decorators import HasAnyRole
        from portal.themes.renderers import ThemeTemplateHTMLRenderer


        class StubCheckSettings(CView):
            template_name = "stubcheck/settings.html"
            roles = ["portal_archive_settings"]
            permission_classes = (HasAnyRole,)
            renderer_classes = (ThemeTemplateHTMLRenderer,)

            def get(self, request):
                return Response({"greeting": "settings of the stub check"})
    """,
    "templates/stubcheck/settings.html": """
        {% themeextends "admin/base_admin.html" %}
        {% block title %}Stub check{% endblock %}
        {% block heading %}Stub check settings{% endblock %}
        {% block content %}<p id="stubcheck-greeting">{{ greeting }}</p>{% endblock %}
    """,
    "templates/stubcheck/navigation.html": """
        {% permissionrequired portal_archive_settings %}
        <li><a id="stubcheck-nav" href="{% url 'stubcheck:settings' %}">Stub check</a></li>
        {% endpermissionrequired %}
    """,
    "templates/stubcheck/left_panel.html": """
        {% permissionrequired portal_archive_settings %}
        <li><a id="stubcheck-left" href="{% url 'stubcheck:settings' %}">Stub check</a></li>
        {% endpermissionrequired %}
    """,
}


STUBBOOT = {
    "__init__.py": '''
        """A throw-away Portal app without URLs whose bootstrap registers a block if enabled."""

        from portal.generic.plugin_interfaces import IPluginBlock, IPluginBootstrap
        from portal.pluginbase.core import Plugin, implements
        from portal.utils.apps import is_app_enabled


        class StubBootBlock(Plugin):
            implements(IPluginBlock)

            def __init__(self):
                self.name = "admin_left_panel_inside_archive"
                self.plugin_guid = "5f3c1e07-2b8a-4f61-9c0d-1e2f3a4b5c6d"

            def return_string(self, tagname, *args):
                return {"guid": self.plugin_guid, "template": "stubboot/left_panel.html"}


        class StubBootBootstrap(Plugin):
            implements(IPluginBootstrap)

            def bootstrap(self):
                if is_app_enabled("stubboot"):
                    StubBootBlock()


        StubBootBootstrap()
    ''',
    "templates/stubboot/left_panel.html": """
        <li id="stubboot-left">booted at start-up</li>
    """,
}


def _write_app(root: Path, name: str, files: dict[str, str]) -> Path:
    app = root / name
    for relative, text in files.items():
        (app / relative).parent.mkdir(parents=True, exist_ok=True)
        (app / relative).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return app


@pytest.fixture(scope="module")
def portal_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    apps_dir = tmp_path_factory.mktemp("apps")
    apps = [
        _write_app(apps_dir, "stubcheck", STUBCHECK),
        _write_app(apps_dir, "stubboot", STUBBOOT),
    ]
    workdir = tmp_path_factory.mktemp("portal")
    with running_portal(workdir, apps=apps, enabled_apps=["stubboot"]) as url:
        yield url


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    with browser() as driver:
        yield driver


# Selenium's locator strategies are plain strings ("id" is By.ID): no selenium import here, so
# this module still collects, and browser() skips, where selenium is not installed.
def _by_id(driver: Any, element_id: str) -> Any:
    return driver.find_element("id", element_id)


def _page_text(driver: Any) -> str:
    return driver.find_element("tag name", "body").text


def _ids_present(driver: Any, *element_ids: str) -> list[str]:
    return [i for i in element_ids if driver.find_elements("id", i)]


def test_anonymous_visitor_is_sent_to_the_login_page(driver: Any, portal_url: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{portal_url}/stubcheck/settings/")
    assert driver.current_url == f"{portal_url}/login/?next=/stubcheck/settings/"
    assert _by_id(driver, "page-heading").text == "Log in"


def test_admin_signs_in_and_finds_the_app_under_system_archive_framework(
    driver: Any, portal_url: str
) -> None:
    login(driver, portal_url, *ADMIN)
    assert _by_id(driver, "portal-brand").text == "Cantemo Portal"
    assert _by_id(driver, "portal-user").text == "admin"
    entry = _by_id(driver, "stubcheck-nav")
    assert not entry.is_displayed()  # the System menu is closed until it is clicked

    _by_id(driver, "system-menu").find_element("tag name", "summary").click()
    assert entry.is_displayed() and entry.text == "Stub check"
    assert "Archive Framework" in _by_id(driver, "archive-framework-menu").text.title()
    screenshot(driver, "portal-stub-system-menu")
    follow(driver, entry)

    assert driver.current_url == f"{portal_url}/stubcheck/settings/"
    assert _by_id(driver, "page-heading").text == "Stub check settings"
    assert _by_id(driver, "stubcheck-greeting").text == "settings of the stub check"
    assert _by_id(driver, "stubcheck-left").is_displayed()
    assert _by_id(driver, "stubboot-left").text == "booted at start-up"
    assert driver.title == "Stub check | Cantemo Portal"


def test_wrong_password_is_refused_on_the_login_page(driver: Any, portal_url: str) -> None:
    with pytest.raises(AssertionError, match="enter a correct username and password"):
        login(driver, portal_url, ADMIN[0], "not-the-password")


def test_user_with_the_role_gets_200(driver: Any, portal_url: str) -> None:
    login(driver, portal_url, *ADMIN)
    assert http_status(driver, f"{portal_url}/stubcheck/settings/") == 200


def test_user_without_the_role_gets_403(driver: Any, portal_url: str) -> None:
    login(driver, portal_url, *VIEWER)
    assert http_status(driver, f"{portal_url}/stubcheck/settings/") == 403
    driver.get(f"{portal_url}/stubcheck/settings/")
    assert "403 Forbidden" in _page_text(driver)


def test_permissionrequired_hides_its_body_from_a_user_without_the_role(
    driver: Any, portal_url: str
) -> None:
    login(driver, portal_url, *VIEWER)
    assert _by_id(driver, "portal-user").text == "viewer"
    assert _ids_present(driver, "archive-framework-menu", "admin-left-panel") == [
        "archive-framework-menu",
        "admin-left-panel",
    ]
    assert _ids_present(driver, "stubcheck-nav", "stubcheck-left") == []


def test_logout_form_ends_the_session(driver: Any, portal_url: str) -> None:
    login(driver, portal_url, *ADMIN)
    logout(driver)
    assert driver.current_url == f"{portal_url}/login/"
    assert http_status(driver, f"{portal_url}/stubcheck/settings/") == 302
