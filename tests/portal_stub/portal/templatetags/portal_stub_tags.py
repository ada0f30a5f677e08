"""Stand-in for the template tags Portal makes available to every template without `{% load %}`.

The test project registers this library as a template builtin, as Portal does with its own:
`themeextends`, `permissionrequired` and `plugin_block`.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.base import FilterExpression, NodeList, Parser, Token
from django.template.context import Context
from django.template.loader_tags import do_extends
from django.utils.safestring import SafeString, mark_safe

from portal.generic.decorators import user_has_any_role
from portal.generic.plugin_interfaces import IPluginBlock
from portal.pluginbase.core import plugins_implementing

register = template.Library()

# Portal's tag picks the active theme's copy of the parent template; the stub has one theme, so the
# tag is Django's own `extends` under Portal's name (it must be the template's first tag, too).
register.tag("themeextends", do_extends)


class PermissionRequiredNode(template.Node):
    def __init__(self, roles: list[str], nodelist: NodeList) -> None:
        self.roles = roles
        self.nodelist = nodelist

    def render(self, context: Context) -> SafeString | str:
        request = getattr(context, "request", None) or context.get("request")
        if user_has_any_role(getattr(request, "user", None), self.roles):
            return self.nodelist.render(context)
        return ""


@register.tag("permissionrequired")
def permissionrequired(parser: Parser, token: Token) -> PermissionRequiredNode:
    """`{% permissionrequired portal_archive_settings %}...{% endpermissionrequired %}`: the body
    only for a user holding the role (a bare role name, not a variable), by HasAnyRole's rule."""
    tag, *roles = token.split_contents()
    if not roles:
        raise template.TemplateSyntaxError(f"{tag!r} takes the name of a role")
    nodelist = parser.parse(("endpermissionrequired",))
    parser.delete_first_token()
    return PermissionRequiredNode([role.strip("\"'") for role in roles], nodelist)


class PluginBlockNode(template.Node):
    def __init__(self, place: FilterExpression) -> None:
        self.place = place

    def render(self, context: Context) -> SafeString:
        place = self.place.resolve(context)
        engine = context.template.engine
        rendered: list[str] = []
        for plugin in plugins_implementing(IPluginBlock):
            if plugin.name != place:
                continue
            answer: dict[str, Any] = plugin.return_string(place)
            rendered.append(engine.get_template(answer["template"]).render(context))
        return mark_safe("".join(rendered))


@register.tag("plugin_block")
def plugin_block(parser: Parser, token: Token) -> PluginBlockNode:
    """`{% plugin_block "NavigationArchivePlugin" %}`: every IPluginBlock plugin registered under
    that place, in registration order, each its `return_string(place)['template']` rendered with
    the page's context."""
    tag, *args = token.split_contents()
    if len(args) != 1:
        raise template.TemplateSyntaxError(f"{tag!r} takes the name of one place")
    return PluginBlockNode(parser.compile_filter(args[0]))
