"""The editor's forms: a target's settings built from its driver's declared settings, a policy.

A driver declares its settings with `archive_core.driver.setting()` (type, default, help,
required, secret); the form is made from that declaration, so a third-party driver gets its
page without writing any UI. Django checks only the types here; everything else is checked by
archive-core's own validation (the code the workers run) when the form is saved, and each
problem it finds is put beside its field (`place_problems`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

#: Prefix of the settings' field names, so a setting called "name" cannot clash with ours.
SETTING = "setting_"
#: Policy copies the form offers at once (one more than a policy has, at least this many).
COPIES = 3
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SECRET_HELP = (
    "A reference, never the secret itself: env:NAME (an environment variable of Portal's "
    "processes) or file:/path (a file only they can read). The value is never shown."
)


def _kind(type_name: str) -> tuple[str, bool]:
    """A declared type ("int | None", "Path", "tuple[str, ...]") as (base, optional)."""
    parts = [p.strip() for p in type_name.split("|")]
    optional = "None" in parts
    rest = [p for p in parts if p != "None"]
    base = rest[0] if len(rest) == 1 else "json"
    if base not in ("str", "Path", "int", "float", "bool", "Secret"):
        base = "json"  # lists, tables, a driver's own settings classes
    return base, optional


def setting_field(info: Any) -> forms.Field:
    """The form field for one declared setting (`archive_core.driver.SettingInfo`)."""
    base, optional = _kind(info.type)
    required = info.required and not optional
    label = info.name.replace("_", " ")
    common = {"label": label, "required": required, "help_text": info.help}
    if base == "bool":
        return forms.BooleanField(**{**common, "required": False})
    if info.choices:
        blank = [] if required else [("", "(default)")]
        return forms.ChoiceField(**common, choices=blank + [(c, c) for c in info.choices])
    if base == "int":
        return forms.IntegerField(**common)
    if base == "float":
        return forms.FloatField(**common)
    if base == "Secret":
        return forms.CharField(
            **{**common, "help_text": f"{info.help} {SECRET_HELP}"},
            validators=[_reference],
            widget=ReferenceInput(attrs={"placeholder": "env:NAME or file:/path", "size": 40}),
        )
    if base == "json":
        return forms.CharField(
            **{**common, "help_text": f"{info.help} (as JSON)"},
            validators=[_json],
            widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        )
    return forms.CharField(**common, widget=forms.TextInput(attrs={"size": 60}))


class ReferenceInput(forms.TextInput):
    """A secret's field: shows a reference (env:NAME, file:/path) but never anything else,
    so a secret typed in by mistake is refused and not sent back in the page."""

    def format_value(self, value: Any) -> str | None:
        text = super().format_value(value)
        return text if text and text.startswith(("env:", "file:")) else None


def _reference(value: str) -> None:
    kind, sep, where = value.partition(":")
    if not sep or kind not in ("env", "file") or not where:
        raise ValidationError(
            "Give the secret by reference (env:NAME or file:/path), not the secret itself."
        )


def _json(value: str) -> None:
    try:
        json.loads(value)
    except ValueError as exc:
        raise ValidationError(f"Not valid JSON: {exc}") from None


class TargetForm(forms.Form):
    """A target: its name (fixed once saved), its driver, whether it is disabled, and the
    settings its driver declares (from its `setting()` declarations)."""

    required_css_class = "required"  # the label of a field that must be filled in

    name = forms.CharField(
        max_length=64,
        help_text="How policies name this target; letters, digits, '_', '.', '-'. "
        "It cannot be changed later (the catalog records copies by it).",
    )
    driver = forms.ChoiceField(help_text="The driver that stores this target's copies.")
    disabled = forms.BooleanField(
        required=False,
        help_text="Takes no new archives; what it holds can still be restored and deleted.",
    )
    comment = forms.CharField(required=False, help_text="Why: shown in the history.")
    based_on = forms.IntegerField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, drivers: Sequence[str], infos: Sequence[Any] = (), **kw: Any):
        super().__init__(*args, **kw)
        self.label_suffix = ""
        self.fields["driver"].choices = [(d, d) for d in drivers]
        self.fields["driver"].error_messages["invalid_choice"] = (
            "No driver named %(value)s is installed here (installed: "
            + (", ".join(drivers) or "none")
            + ")."
        )
        self.infos = list(infos)
        for info in self.infos:
            self.fields[SETTING + info.name] = setting_field(info)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if not NAME.match(name):
            raise ValidationError(
                "Use letters, digits, '_', '.' and '-' only (starting with a letter or digit)."
            )
        return name

    def setting_fields(self) -> list[Any]:
        """The settings most admins set; `advanced_fields` holds the rest."""
        return [self[SETTING + i.name] for i in self.infos if not i.advanced]

    def advanced_fields(self) -> list[Any]:
        return [self[SETTING + i.name] for i in self.infos if i.advanced]

    def settings(self) -> dict[str, Any]:
        """The settings to store: what was entered, without blanks and without values equal
        to the driver's default (so a later default applies to them)."""
        values: dict[str, Any] = {}
        for info in self.infos:
            value = self.cleaned_data.get(SETTING + info.name)
            base, _ = _kind(info.type)
            if value in (None, "") or (base == "bool" and value == (info.default or False)):
                continue
            if base == "json":
                value = json.loads(value)
            if not info.secret and info.default is not None and value == info.default:
                continue
            values[info.name] = value
        return values


def setting_initial(infos: Iterable[Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The form's initial values for stored `settings` (defaults where none is stored)."""
    initial: dict[str, Any] = {}
    for info in infos:
        base, _ = _kind(info.type)
        value = settings.get(info.name, info.default)
        if value is None:
            continue
        if base == "json":
            value = json.dumps(value, indent=1)
        initial[SETTING + info.name] = value
    return initial


class PolicyForm(forms.Form):
    """A policy: uuid (fixed once saved), name, targets in copy order, limits and checks."""

    required_css_class = "required"

    uuid = forms.CharField(
        max_length=64,
        help_text="What Portal knows the policy by; it cannot be changed later.",
    )
    name = forms.CharField(max_length=255, help_text="Shown in Portal's archive dialogs.")
    max_files = forms.IntegerField(
        required=False, min_value=1, help_text="Bulk: most files Portal hands over at once."
    )
    max_bytes = forms.IntegerField(
        required=False, min_value=1, help_text="Bulk: most bytes Portal hands over at once."
    )
    verified_copies = forms.IntegerField(
        required=False,
        min_value=0,
        help_text="Copies that must have been read back before a file counts as archived.",
    )
    repair = forms.BooleanField(
        required=False, help_text="A scrub writes a bad copy again from a good one."
    )
    disabled = forms.BooleanField(
        required=False,
        help_text="Takes no new archives; what it archived can still be restored and deleted.",
    )
    comment = forms.CharField(required=False, help_text="Why: shown in the history.")
    based_on = forms.IntegerField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, targets: Sequence[str], copies: int = COPIES, **kw: Any):
        super().__init__(*args, **kw)
        self.label_suffix = ""
        choices = [("", "(none)")] + [(t, t) for t in targets]
        # copies=0: the policy has its own driver and settings, so no targets to pick.
        self.copies = max(COPIES, copies) if copies else 0
        for n in range(1, self.copies + 1):
            self.fields[f"copy_{n}"] = forms.ChoiceField(
                choices=choices,
                required=n == 1,
                label=f"copy {n} on",
                help_text="The first copy is written first; each target keeps one copy."
                if n == 1
                else "",
            )
            self.fields[f"copy_{n}"].error_messages["invalid_choice"] = (
                "No target named %(value)s is configured."
            )

    def copy_fields(self) -> list[Any]:
        return [self[f"copy_{n}"] for n in range(1, self.copies + 1)]

    def entry(self) -> dict[str, Any]:
        """The policy as a document entry."""
        data = self.cleaned_data
        entry: dict[str, Any] = {
            "name": data["name"],
            "targets": [
                data[f"copy_{n}"] for n in range(1, self.copies + 1) if data.get(f"copy_{n}")
            ],
        }
        bulk = {k: data[k] for k in ("max_files", "max_bytes") if data.get(k)}
        if bulk:
            entry["bulk"] = bulk
        for key in ("verified_copies",):
            if data.get(key):
                entry[key] = data[key]
        for key in ("repair", "disabled"):
            if data.get(key):
                entry[key] = True
        return entry


def policy_initial(uuid_: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    initial = {"uuid": uuid_, "name": entry.get("name", "")}
    for n, target in enumerate(entry.get("targets", ()), start=1):
        initial[f"copy_{n}"] = target
    initial.update(entry.get("bulk", {}))
    for key in ("verified_copies", "repair", "disabled"):
        if key in entry:
            initial[key] = entry[key]
    return initial


def new_policy_uuid() -> str:
    return str(uuid.uuid4())


def place_problems(form: forms.Form, problems: Iterable[str], fields: Mapping[str, str]) -> None:
    """Put each `path: message` problem from archive-core's validation beside its field.

    `fields` maps a problem's path (or the start of it) to a field name; a problem with no
    field of its own goes at the top of the form, with its path.
    """
    for problem in problems:
        path, sep, message = problem.partition(": ")
        if not sep:
            form.add_error(None, problem)
            continue
        match = max(
            (p for p in fields if path == p or path.startswith(p + ".")), key=len, default=None
        )
        if match is None:
            form.add_error(None, problem)
            continue
        detail = path[len(match) + 1 :] if path != match else ""
        form.add_error(fields[match], f"{detail}: {message}" if detail else message)
