"""archive-core's admin pages in Portal: overview, target and policy editor, test, history.

Every view is a Portal `CView` behind the `portal_archive_settings` role: a user without it
gets 403 from every page and every form post. Forms post with Django's CSRF token, checked
here as well as by Portal's authentication, so no Portal setting can turn it off for these
pages. The pages read the site through the same plugin instance Portal's workers call, and
write nothing but configuration versions to the catalog (`archive_core.configedit`).
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from portal.generic.baseviews import CView
from portal.generic.decorators import HasAnyRole
from portal.themes.renderers import ThemeTemplateHTMLRenderer
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from . import forms as pageforms

log = logging.getLogger(__name__)

ROLE = "portal_archive_settings"
NAMESPACE = "archive_core_portal"
_SAFE = ("GET", "HEAD", "OPTIONS")


def _plugin():
    from .plugin import PLUGIN

    return PLUGIN


class AdminPage(CView):
    """What every archive-core page is: role-checked, CSRF-checked, rendered in Portal's
    theme (JSON for the test button's script)."""

    renderer_classes = (ThemeTemplateHTMLRenderer, JSONRenderer)
    permission_classes = (HasAnyRole,)
    roles = [ROLE]

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication and the role: 403
        if request.method not in _SAFE:
            refused = CsrfViewMiddleware(lambda r: None).process_view(
                request._request, None, (), {}
            )
            if refused is not None:
                raise PermissionDenied("CSRF check failed: reload the page and try again.")

    def handle_exception(self, exc: Exception) -> Any:
        from archive_core.errors import CatalogError

        if isinstance(exc, Unavailable):
            return self.page("overview.html", status=503)
        if isinstance(exc, CatalogError):  # the catalog, where the configuration is, is down
            log.error("archive-core's catalog cannot be used: %s", exc.message)
            return self.page("overview.html", status=503, site_error=exc.message)
        return super().handle_exception(exc)

    def page(self, template: str, status: int = 200, **context: Any) -> Response:
        site, error = _site()
        context.setdefault("site_error", error)
        if site is not None:
            context.setdefault("source", site.config.config_source)
            context.setdefault("read_only", _read_only(site))
        return Response(context, status=status, template_name=f"archive_core_portal/{template}")


def _site() -> tuple[Any, Any]:
    """The plugin's current site, or why there is none (a config that does not load)."""
    from archive_core.errors import ConfigError

    try:
        return _plugin().site(), None
    except ConfigError as exc:
        return None, exc


def _read_only(site: Any) -> str | None:
    """Why the pages cannot change this site's configuration (None: they can)."""
    from archive_core.policies import CATALOG

    source = site.config.config_source
    if source.kind == CATALOG:
        return None
    return (
        f"This site reads its targets and policies from the file {source.file} ({source.why}), "
        "so they are shown here but changed in that file. To manage them on these pages, "
        "run `archive-core config import` with that file (it takes its targets and "
        "policies), then remove its [targets] and [policies]."
    )


def _current(site: Any) -> tuple[dict[str, Any], int]:
    """The document the site runs now, and the version number an edit is based on."""
    from archive_core import configstore

    version = site.config.config_source.version
    if version is None:
        document, number = configstore.document_of(site.config), 0
    else:
        document, number = copy.deepcopy(dict(version.document)), version.number
    for key in ("targets", "policies"):
        document.setdefault(key, {})
    return document, number


def _actor(request: Any) -> str:
    return f"{request.user.get_username()} (Portal user)"


def _overview() -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse(f"{NAMESPACE}:overview"))


def _save(request: Any, form: Any, site: Any, document: dict, fields: dict[str, str]) -> bool:
    """Save `document` as the next version; problems go beside their fields (False)."""
    from archive_core import configedit
    from archive_core.errors import ConfigConflict, ConfigError

    if (reason := _read_only(site)) is not None:
        form.add_error(None, reason)
        return False
    try:
        saved = configedit.save(
            site,
            document,
            actor=_actor(request),
            comment=form.cleaned_data.get("comment", ""),
            based_on=form.cleaned_data["based_on"],
        )
    except ConfigConflict as exc:
        form.add_error(None, exc.message)
        return False
    except ConfigError as exc:
        pageforms.place_problems(form, exc.problems, fields)
        return False
    messages.success(request, f"Saved as configuration version {saved.number}.")
    log.info("configuration version %s saved by %s", saved.number, _actor(request))
    return True


# --- overview ---------------------------------------------------------------------------------


class OverviewView(AdminPage):
    def get(self, request: Any) -> Response:
        from archive_core.registry import default_registry

        site, _ = _site()
        registry = site.registry if site is not None else default_registry()
        context: dict[str, Any] = {"drivers": [_driver_row(s) for s in registry.states()]}
        if site is not None:
            context.update(_site_rows(site))
        return self.page("overview.html", **context)


def _driver_row(state: Any) -> dict[str, Any]:
    return {
        "name": state.name,
        "distribution": state.entry.distribution if state.entry else "",
        "version": state.entry.version if state.entry else "",
        "capabilities": ", ".join(sorted(c.value for c in state.capabilities)),
        "ok": state.ok,
        "status": str(state.status),
        "reason": state.reason,
    }


def _site_rows(site: Any) -> dict[str, Any]:
    from archive_core.errors import CatalogError

    policies = []
    for state in site.all_readiness():
        policy = state.policy
        ages = [a for a in (site.checked_ago(t) for t in policy.targets) if a is not None]
        policies.append(
            {
                "uuid": policy.uuid,
                "name": policy.name,
                "targets": [
                    {"name": t, "driver": site.config.targets[t].driver} for t in policy.targets
                ],
                "bulk": site.bulk_support(policy),
                "limits": policy.bulk,
                "ok": state.readiness.ok,
                "reason": state.readiness.reason,
                "checked": f"{max(ages):.0f} s ago" if ages else "",
                "offered_by": policy.offered_by,
                "disabled": policy.disabled,
            }
        )
    targets = [
        {
            "name": t.name,
            "driver": t.driver,
            "disabled": t.disabled,
            # One declared inside its policy (driver + settings there) has no page of its own.
            "in_policy": t.path != f"targets.{t.name}",
        }
        for t in site.config.targets.values()
    ]
    names = {p["uuid"]: p["name"] for p in policies}
    try:
        recent, recent_error = site.catalog.recent(), None
        integrity = [
            {"row": row, "name": names.get(row.policy, "(not configured)")}
            for row in site.catalog.summary()
        ]
    except CatalogError as exc:
        recent, recent_error, integrity = None, exc.message, []
    return {
        "policies": policies,
        "targets": targets,
        "recent": recent,
        "recent_error": recent_error,
        "integrity": integrity,
    }


# --- target editor ----------------------------------------------------------------------------


def _driver_names(site: Any) -> list[str]:
    return sorted(s.name for s in site.registry.states(load=False) if s.entry is not None)


def _settings_of(site: Any, driver: str) -> tuple[list[Any], str | None]:
    """The settings `driver` declares, or why they cannot be known (it does not load)."""
    from archive_core.driver import describe_config
    from archive_core.errors import ArchiveCoreError

    if not driver:
        return [], None
    try:
        return describe_config(site.registry.load(driver).Config), None
    except ArchiveCoreError as exc:
        return [], getattr(exc, "reason", exc.message)


def _target_fields(name: str, infos: list[Any]) -> dict[str, str]:
    fields = {f"targets.{name}": "name", f"targets.{name}.driver": "driver"}
    fields.update({f"targets.{name}.settings.{i.name}": pageforms.SETTING + i.name for i in infos})
    return fields


class TargetView(AdminPage):
    """`targets/new/` creates a target, `targets/<name>/` edits one."""

    def get(self, request: Any, name: str | None = None) -> Response:
        site = _require_site()
        document, based_on = _current(site)
        entry = _target_entry(document, name)
        driver = request.GET.get("driver") or entry.get("driver") or _default_driver(site)
        infos, load_error = _settings_of(site, driver)
        initial = {
            "name": name or "",
            "driver": driver,
            "disabled": entry.get("disabled", False),
            "based_on": based_on,
            **pageforms.setting_initial(infos, entry.get("settings", {}) if entry else {}),
        }
        form = pageforms.TargetForm(initial=initial, drivers=_driver_names(site), infos=infos)
        return self._render(site, form, name, driver, load_error, secrets=_secrets(infos, entry))

    def post(self, request: Any, name: str | None = None) -> Any:
        site = _require_site()
        document, _ = _current(site)
        entry = _target_entry(document, name)
        data = request.POST.copy()
        if name is not None:
            data["name"] = name  # fixed once saved: a forged name field cannot rename it
        driver = data.get("driver", "")
        infos, load_error = _settings_of(site, driver)
        if "choose_driver" in data:  # the driver changed: show its settings, save nothing
            return HttpResponseRedirect(f"{request.path}?driver={driver}")
        form = pageforms.TargetForm(data, drivers=_driver_names(site), infos=infos)
        if form.is_valid():
            target = form.cleaned_data["name"]
            if name is None and target in document["targets"]:
                form.add_error("name", f"A target named {target} exists already.")
            else:
                new = {"driver": driver, "settings": form.settings()}
                for key in ("verified_copies",):  # kept: the page does not edit it
                    if key in entry:
                        new[key] = entry[key]
                if form.cleaned_data["disabled"]:
                    new["disabled"] = True
                document["targets"][target] = new
                if _save(request, form, site, document, _target_fields(target, infos)):
                    return _overview()
        return self._render(site, form, name, driver, load_error, status=400)

    def _render(self, site, form, name, driver, load_error, *, secrets=(), status=200):
        return self.page(
            "target.html",
            status=status,
            form=form,
            name=name,
            driver=driver,
            load_error=load_error,
            secrets=secrets,
        )


def _target_entry(document: dict, name: str | None) -> dict[str, Any]:
    if name is None:
        return {}
    entry = document["targets"].get(name)
    if entry is None:
        raise Http404(f"No target named {name} is configured.")
    return entry


def _secrets(infos: list[Any], entry: dict) -> list[dict[str, str]]:
    """Each stored secret reference and whether it resolves here: masked, never its value."""
    from archive_core.secret import MASK, resolve_secret

    shown = []
    for info in infos:
        reference = (entry.get("settings") or {}).get(info.name) if entry else None
        if not info.secret or not reference:
            continue
        try:
            resolve_secret(reference)
            state = f"{MASK} (found)"
        except ValueError as exc:
            state = f"not found in this process: {exc}"
        shown.append({"name": info.name, "reference": reference, "state": state})
    return shown


def _default_driver(site: Any) -> str:
    """What a new target's form starts with: the first installed driver that loads."""
    names = _driver_names(site)
    return next((n for n in names if site.registry.state(n).ok), names[0] if names else "")


def _require_site() -> Any:
    """The site, or the overview's explanation of why its config does not load (503)."""
    site, error = _site()
    if site is None:
        raise Unavailable(error)
    return site


class Unavailable(Exception):
    """The configuration does not load: the pages can only say why."""


# --- policy editor ----------------------------------------------------------------------------


class PolicyView(AdminPage):
    """`policies/new/` creates a policy, `policies/<uuid>/` edits one."""

    def get(self, request: Any, uuid: str | None = None) -> Response:
        site = _require_site()
        document, based_on = _current(site)
        entry = _policy_entry(document, uuid)
        initial = pageforms.policy_initial(uuid or pageforms.new_policy_uuid(), entry)
        initial["based_on"] = based_on
        form = self._form(document, entry, initial=initial)
        return self.page("policy.html", form=form, uuid=uuid, no_targets=not document["targets"])

    def post(self, request: Any, uuid: str | None = None) -> Any:
        site = _require_site()
        document, _ = _current(site)
        entry = _policy_entry(document, uuid)
        data = request.POST.copy()
        if uuid is not None:
            data["uuid"] = uuid
        form = self._form(document, entry, data=data)
        if form.is_valid():
            key = form.cleaned_data["uuid"]
            if uuid is None and key in document["policies"]:
                form.add_error("uuid", f"A policy with uuid {key} exists already.")
            else:
                new = form.entry()
                for kept in ("driver", "settings"):  # a policy with its own target
                    if kept in entry:
                        new[kept] = entry[kept]
                        new.pop("targets", None)
                document["policies"][key] = new
                base = f"policies.{key}"
                fields = {
                    base: "name",
                    f"{base}.name": "name",
                    f"{base}.targets": "copy_1",
                    f"{base}.bulk.max_files": "max_files",
                    f"{base}.bulk.max_bytes": "max_bytes",
                    f"{base}.verified_copies": "verified_copies",
                }
                if _save(request, form, site, document, fields):
                    return _overview()
        return self.page(
            "policy.html", status=400, form=form, uuid=uuid, no_targets=not document["targets"]
        )

    @staticmethod
    def _form(document: dict, entry: dict, **kwargs: Any) -> Any:
        targets = sorted(document["targets"])
        # A policy with a driver of its own archives to that one target only.
        copies = 0 if "driver" in entry else len(entry.get("targets", ())) + 1
        return pageforms.PolicyForm(targets=targets, copies=copies, **kwargs)


def _policy_entry(document: dict, uuid: str | None) -> dict[str, Any]:
    if uuid is None:
        return {}
    entry = document["policies"].get(uuid)
    if entry is None:
        raise Http404(f"No policy with uuid {uuid} is configured.")
    return entry


# --- test button ------------------------------------------------------------------------------


class TargetTestView(AdminPage):
    """Runs one target's bounded readiness check; JSON for the button's script, else a page."""

    def post(self, request: Any, name: str) -> Response:
        site = _require_site()
        if name not in site.config.targets:
            raise Http404(f"No target named {name} is configured.")
        started = time.monotonic()
        readiness = site.test_target(name)
        result = {
            "target": name,
            "ok": readiness.ok,
            "reason": readiness.reason,
            "seconds": round(time.monotonic() - started, 2),
        }
        if request.accepted_renderer.format == "json":
            return Response(result)
        return self.page("test_result.html", result=result)


# --- history ----------------------------------------------------------------------------------


class HistoryView(AdminPage):
    def get(self, request: Any) -> Response:
        from archive_core import configedit

        site = _require_site()
        versions = site.catalog.config_versions.history()
        secret = configedit.secret_test(site.registry)
        rows = []
        for index, version in enumerate(versions):
            before = versions[index + 1].document if index + 1 < len(versions) else None
            rows.append(
                {
                    "version": version,
                    "changes": configedit.changes(before, version.document, secret=secret),
                    "current": index == 0,
                }
            )
        latest = versions[0].number if versions else 0
        return self.page("history.html", rows=rows, latest=latest)


class RevertView(AdminPage):
    def post(self, request: Any, number: int) -> Any:
        from archive_core import configedit
        from archive_core.errors import ArchiveCoreError

        site = _require_site()
        if (reason := _read_only(site)) is not None:
            messages.error(request, reason)
            return HttpResponseRedirect(reverse(f"{NAMESPACE}:history"))
        try:
            based_on = int(request.POST.get("based_on", ""))
        except ValueError:
            based_on = -1
        try:
            saved = configedit.revert(site, number, actor=_actor(request), based_on=based_on)
        except ArchiveCoreError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(
                request, f"Version {number} saved again as configuration version {saved.number}."
            )
        return HttpResponseRedirect(reverse(f"{NAMESPACE}:history"))
