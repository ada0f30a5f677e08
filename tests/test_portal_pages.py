"""archive-core's admin pages in Portal, driven in headless Chromium on the stand-in Portal.

One server and one browser for the module; the tests run in file order and build on each
other as an admin would: a first visit with no configuration, a target and a policy made
and tested, mistakes refused, a broken third-party driver, history and revert.
"""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archive_core.policies import load_config
from archive_core.portal import ArchiveCorePlugin
from archive_core.testing.siteconfig import write_config
from tests.fakedist import write_distribution
from tests.portal_web import (
    ADMIN,
    VIEWER,
    browser,
    follow,
    http_status,
    login,
    running_portal,
    screenshot,
    wait_until_replaced,
)
from tests.sites import media

pytestmark = pytest.mark.slow

POLICY = "5f0c2f7e-7d43-4a51-9d8e-3c2b1a0f9e88"
SECRET = "s3cret-value-never-shown"
BROKEN_POLICY = "0a6e5d4c-3b2a-4918-8776-5a4b3c2d1e0f"
OWN_POLICY = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pages")
    allowed = base / "archive"
    allowed.mkdir()
    (allowed / "nearline").mkdir()
    config = write_config(
        base / "bootstrap.toml",
        targets={},
        policies={},
        catalog_url=f"sqlite:///{base / 'catalog.sqlite'}",
        config={"allowed_roots": [str(allowed)]},
    )
    # A third-party driver that is installed but does not load (its import fails).
    fake = base / "site-packages"
    write_distribution(
        fake,
        name="acme-archive-driver",
        version="2.1",
        entry_points={"archive_core.drivers": {"acme": "acme_archive_driver:AcmeDriver"}},
        files={"acme_archive_driver.py": "raise ImportError('No module named acme_sdk')\n"},
    )
    return {"base": base, "config": config, "allowed": allowed, "fake": fake}


@pytest.fixture(scope="module")
def portal(site) -> Iterator[str]:
    import os

    env = {
        "ARCHIVE_CORE_CONFIG": str(site["config"]),
        "ARCHIVE_CORE_PAGES_SECRET": SECRET,
        "PYTHONPATH": os.pathsep.join([str(site["fake"]), os.environ.get("PYTHONPATH", "")]),
    }
    with running_portal(site["base"] / "portal", env) as url:
        yield url


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as driver:
        yield driver


@pytest.fixture
def admin(chromium, portal) -> Any:
    login(chromium, portal, *ADMIN)
    return chromium


def by_id(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def text(driver: Any, element_id: str) -> str:
    return by_id(driver, element_id).text


def fill(driver: Any, values: dict[str, str]) -> None:
    from selenium.webdriver.support.ui import Select

    for name, value in values.items():
        element = by_id(driver, f"id_{name}")
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        else:
            element.clear()
            element.send_keys(value)


def submit(driver: Any) -> None:
    follow(driver, by_id(driver, "save"))


def versions(site) -> int:
    plugin = ArchiveCorePlugin(site["config"])
    return plugin.site().catalog.config_versions.latest_number()


def test_a_user_without_the_role_gets_403_from_every_page_and_form(chromium, portal, site):
    login(chromium, portal, *VIEWER)
    chromium.get(portal + "/")
    assert "archive-core" not in text(chromium, "archive-framework-menu")
    for path in ("", "targets/new/", "policies/new/", "history/", "targets/x/"):
        assert http_status(chromium, f"{portal}/archive-core/{path}") == 403, path
    cookies = {c["name"]: c["value"] for c in chromium.get_cookies()}
    for path in ("targets/new/", "policies/new/", "targets/x/test/", "history/1/revert/"):
        assert _post(portal, f"/archive-core/{path}", cookies) == 403, path
    screenshot(chromium, "refused")
    assert versions(site) == 0


def _post(portal: str, path: str, cookies: dict[str, str], *, token: bool = True) -> int:
    """A form post with the session's cookies and (with `token`) its CSRF token."""
    parts = urllib.parse.urlsplit(portal)
    headers = {
        "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
        "Content-Type": "application/x-www-form-urlencoded",
        "Referer": portal + path,
    }
    if token and "csrftoken" in cookies:
        headers["X-CSRFToken"] = cookies["csrftoken"]
    body = urllib.parse.urlencode({"name": "evil", "driver": "filesys", "based_on": "0"})
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("POST", path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_first_visit_with_no_configuration_says_where_it_comes_from(admin, portal):
    admin.get(portal + "/")
    by_id(admin, "system-menu").click()  # opens the menu: no new page
    follow(admin, by_id(admin, "archive-core-nav"))
    assert "the catalog, where no version is saved yet" in text(admin, "config-source")
    assert text(admin, "no-policies").startswith("No policies yet")
    assert "loaded" in text(admin, "driver-filesys")
    screenshot(admin, "overview-empty")
    follow(admin, by_id(admin, "new-policy"))
    assert "add a target first" in text(admin, "no-targets")


def test_a_form_post_without_the_csrf_token_is_refused(admin, portal, site):
    cookies = {c["name"]: c["value"] for c in admin.get_cookies()}
    assert _post(portal, "/archive-core/targets/new/", cookies, token=False) == 403
    assert versions(site) == 0


def test_a_setting_the_driver_refuses_is_shown_beside_its_field_and_nothing_is_saved(
    admin, portal, site
):
    admin.get(portal + "/archive-core/targets/new/")
    fill(admin, {"name": "nearline", "setting_root": "archive/nearline"})
    submit(admin)
    assert "must be an absolute path" in text(admin, "field-setting_root")
    fill(admin, {"setting_root": "/etc"})
    submit(admin)
    assert f"/etc is outside the allowed roots ({site['allowed']})" in text(
        admin, "field-setting_root"
    )
    screenshot(admin, "target-invalid")
    assert versions(site) == 0


def test_a_forged_driver_field_is_refused_with_the_reason(admin, portal, site):
    admin.get(portal + "/archive-core/targets/new/")
    admin.execute_script(
        "var o = document.createElement('option'); o.value = 'evil'; o.text = 'evil';"
        "document.getElementById('id_driver').appendChild(o);"
        "document.getElementById('id_driver').value = 'evil';"
    )
    fill(admin, {"name": "forged", "setting_root": str(site["allowed"])})
    submit(admin)
    assert "No driver named evil is installed here" in text(admin, "field-driver")
    assert versions(site) == 0


def test_an_admin_creates_a_filesys_target_and_a_policy_and_tests_it(admin, portal, site):
    admin.get(portal + "/archive-core/")
    follow(admin, by_id(admin, "new-target"))
    fill(
        admin,
        {
            "name": "nearline",
            "setting_root": str(site["allowed"] / "nearline"),
            "setting_min_free_bytes": "0",
            "comment": "first target",
        },
    )
    screenshot(admin, "target-editor")
    submit(admin)
    assert "Saved as configuration version 1" in text(admin, "portal-messages")
    follow(admin, by_id(admin, "new-policy"))
    by_id(admin, "id_uuid").clear()
    fill(admin, {"uuid": POLICY, "name": "Nearline archive", "copy_1": "nearline"})
    fill(admin, {"max_files": "500"})
    screenshot(admin, "policy-editor")
    submit(admin)
    assert "Saved as configuration version 2" in text(admin, "portal-messages")
    row = text(admin, f"policy-{POLICY}")
    assert "Nearline archive" in row and "nearline (filesys)" in row and "ready" in row
    _press_test(admin, "nearline")
    assert text(admin, "target-nearline").split("Test", 1)[1].strip().startswith("ready")
    screenshot(admin, "overview")
    # The worker side: the policy works through Portal's face, from the catalog's config.
    plugin = ArchiveCorePlugin(site["config"])
    fs = media(site["base"] / "online", "clip.mxf", b"essence")
    archived, _, error, _ = plugin.archive([fs], POLICY, "job-1")
    assert error == "" and archived


def _press_test(driver: Any, target: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    row = by_id(driver, f"target-{target}")
    row.find_element(By.TAG_NAME, "button").click()
    result = row.find_element(By.CLASS_NAME, "test-result")
    WebDriverWait(driver, 15, poll_frequency=0.05).until(
        lambda _: result.text and result.text != "checking\u2026"
    )


def test_a_secret_is_entered_as_a_reference_and_its_value_never_shown(admin, portal, site):
    admin.get(portal + "/archive-core/targets/new/?driver=sftp")
    values = {"name": "offsite", "setting_host": "127.0.0.1", "setting_remote_root": "/srv"}
    fill(admin, {**values, "setting_password": "hunter2-typed-inline"})
    submit(admin)
    assert "Give the secret by reference" in text(admin, "field-setting_password")
    assert "hunter2-typed-inline" not in admin.page_source  # not even sent back in the form
    fill(admin, {"setting_password": "env:ARCHIVE_CORE_PAGES_SECRET"})
    submit(admin)
    assert "Saved as configuration version" in text(admin, "portal-messages")
    admin.get(portal + "/archive-core/targets/offsite/")
    assert "env:ARCHIVE_CORE_PAGES_SECRET" in admin.page_source
    assert "password = env:ARCHIVE_CORE_PAGES_SECRET \u2192 ******** (found)" in text(
        admin, "target-form"
    )
    for page in ("", "targets/offsite/", "history/"):
        admin.get(f"{portal}/archive-core/{page}")
        assert SECRET not in admin.page_source, page


def test_the_test_button_works_without_javascript_too(admin, portal):
    admin.get(portal + "/archive-core/")
    form = by_id(admin, "target-nearline")
    # form.submit() posts the form as a browser without JavaScript would: no submit event.
    admin.execute_script("document.querySelector('#target-nearline form').submit()")
    wait_until_replaced(admin, form)
    assert text(admin, "test-result").startswith("ready: root")
    screenshot(admin, "test-result")


def test_the_test_button_of_a_broken_target_shows_the_reason(admin, portal, site):
    admin.get(portal + "/archive-core/targets/new/")
    fill(admin, {"name": "offline", "setting_root": str(site["allowed"] / "not-mounted")})
    submit(admin)
    _press_test(admin, "offline")
    result = text(admin, "target-offline")
    assert "not ready" in result and "not-mounted" in result
    screenshot(admin, "test-broken-target")


def test_a_broken_third_party_driver_shows_its_load_error_while_other_policies_work(
    admin, portal, site
):
    import attrs

    from archive_core.policies import parse_document

    # Saved while the driver worked; it has since stopped loading (an upgrade gone wrong).
    plugin = ArchiveCorePlugin(site["config"])
    versions_store = plugin.site().catalog.config_versions
    document = dict(versions_store.latest().document)
    document["targets"] = {**document["targets"], "acme": {"driver": "acme", "settings": {}}}
    document["policies"] = {
        **document["policies"],
        BROKEN_POLICY: {"name": "Acme cloud", "targets": ["acme"]},
    }
    targets, policies = parse_document(document)
    config = attrs.evolve(load_config(site["config"]), targets=targets, policies=policies)
    versions_store.save(
        document, config=config, actor="test", based_on=versions_store.latest_number()
    )
    admin.get(portal + "/archive-core/")
    driver_row = text(admin, "driver-acme")
    assert "acme-archive-driver" in driver_row and "2.1" in driver_row
    assert "No module named acme_sdk" in driver_row
    assert "not ready" in text(admin, f"policy-{BROKEN_POLICY}")
    assert "No module named acme_sdk" in text(admin, f"policy-{BROKEN_POLICY}")
    assert "ready" in text(admin, f"policy-{POLICY}").split("Nearline archive")[1]
    screenshot(admin, "overview-broken-driver")
    fs = media(site["base"] / "online", "other.mxf", b"more essence", item_id="VX-2")
    worker = ArchiveCorePlugin(site["config"])
    archived, _, error, _ = worker.archive([fs], POLICY, "job-2")
    assert error == "" and archived
    # A file whose bytes are not what Portal's sha1 says: its failure is on the overview.
    bad = media(site["base"] / "online", "bad.mxf", b"changed", item_id="VX-3")
    _, not_archived, error, _ = worker.archive([bad._replace(sha1="0" * 40)], POLICY, "job-3")
    assert not_archived and error
    admin.get(portal + "/archive-core/")
    jobs = text(admin, "jobs")
    assert "job-2" in jobs and "job-3" in jobs
    failure = text(admin, "failures")
    assert "job-3" in failure and "bad.mxf" in failure and "sha1" in failure
    [row] = [r for r in text(admin, "integrity").splitlines() if "Nearline archive" in r]
    assert row.split()[2:5] == ["nearline", "2", str(len(b"essence") + len(b"more essence"))]


def test_a_policy_with_its_own_driver_is_edited_without_a_target_page(admin, portal, site):
    import attrs

    from archive_core.policies import parse_document

    plugin = ArchiveCorePlugin(site["config"])
    store = plugin.site().catalog.config_versions
    document = dict(store.latest().document)
    own = {"driver": "filesys", "settings": {"root": str(site["allowed"] / "nearline")}}
    document["policies"] = {**document["policies"], OWN_POLICY: {"name": "Own", **own}}
    targets, policies = parse_document(document)
    config = attrs.evolve(load_config(site["config"]), targets=targets, policies=policies)
    store.save(document, config=config, actor="import", based_on=store.latest_number())
    admin.get(portal + "/archive-core/")
    assert "(declared in its policy)" in text(admin, f"target-{OWN_POLICY}")
    admin.get(portal + f"/archive-core/policies/{OWN_POLICY}/")
    assert "carries its own driver and settings" in text(admin, "policy-form")
    fill(admin, {"name": "Own renamed"})
    submit(admin)
    assert "Saved as configuration version" in text(admin, "portal-messages")
    saved = ArchiveCorePlugin(site["config"]).site().config.policies[OWN_POLICY]
    assert saved.name == "Own renamed" and saved.targets == (OWN_POLICY,)


def test_history_shows_each_version_and_reverts_to_one(admin, portal, site):
    admin.get(portal + f"/archive-core/policies/{POLICY}/")
    fill(admin, {"name": "Renamed archive", "comment": "new name"})
    submit(admin)
    follow(admin, by_id(admin, "history"))
    newest = text(admin, "versions").splitlines()
    assert any("name changed from 'Nearline archive' to 'Renamed archive'" in n for n in newest)
    assert "admin (Portal user)" in text(admin, "versions")
    assert "target nearline added (driver filesys)" in text(admin, "version-1")
    screenshot(admin, "history")
    from selenium.webdriver.common.by import By

    latest = versions(site)
    follow(admin, by_id(admin, "version-2").find_element(By.TAG_NAME, "button"))
    assert f"Version 2 saved again as configuration version {latest + 1}" in text(
        admin, "portal-messages"
    )
    plugin = ArchiveCorePlugin(site["config"])
    assert [p["name"] for p in plugin.get_policies()] == ["Nearline archive"]  # version 2's
    assert "revert to version 2" in text(admin, f"version-{latest + 1}")


def test_a_catalog_that_cannot_be_read_is_explained_not_a_server_error(admin, portal, site):
    # Last in the module: the catalog is gone from here on.
    for path in site["base"].glob("catalog.sqlite*"):
        path.unlink()
    (site["base"] / "catalog.sqlite").mkdir()  # where the file was: SQLite cannot open it
    admin.get(portal + "/archive-core/history/")
    assert "configuration does not load" in text(admin, "site-error")
    assert http_status(admin, portal + "/archive-core/history/") == 503
