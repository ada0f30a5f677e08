"""Stub only: makes the stand-in `portal` package a Django app, so that its templates and
template tags are found the way Portal's own are."""

from __future__ import annotations

from django.apps import AppConfig


class PortalStubConfig(AppConfig):
    name = "portal"
    verbose_name = "Cantemo Portal (test stand-in)"
