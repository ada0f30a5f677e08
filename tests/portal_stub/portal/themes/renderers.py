"""Stand-in for portal.themes.renderers: how Portal's views render HTML."""

from __future__ import annotations

from rest_framework.renderers import TemplateHTMLRenderer


class ThemeTemplateHTMLRenderer(TemplateHTMLRenderer):
    """Renders the view's `template_name` with the response data as context.

    Portal's renderer picks the template of the active theme; the stub has one theme, so this is
    DRF's renderer unchanged.
    """
