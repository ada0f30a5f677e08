"""Stand-in for portal.generic.plugin_interfaces: the interfaces a Portal app registers under."""

from __future__ import annotations


class Interface:
    """Marker base: an interface names a role; plugins declare it with `implements(...)`."""


class IAppRegister(Interface):
    """An app's entry in Portal's app list: calling the plugin returns a dict with at least
    `name`, `version`, `app_id` and `enabled`."""


class IPluginBootstrap(Interface):
    """`bootstrap()` is called once at start-up; an app imports its real plugins there, and only
    when it is enabled."""


class IArchivePlugin(Interface):
    """An Archive Framework plugin: archive(file_sets, policy_uuid, job_id),
    restore(file_sets, policy_uuid), delete(file_sets, policy_uuid), get_policies(), is_ready(),
    optionally get_policy_constrains(); with plugin_guid, name and role_* attributes."""


class IPluginURL(Interface):
    """Adds an app's URLs to Portal's URLconf: a plugin has `name`, `urls` (the dotted module
    holding `urlpatterns`, e.g. 'portal.plugins.<app>.urls'), `urlpattern` (the regular
    expression prefix they are mounted under; '' for the root) and `namespace`."""


class IPluginBlock(Interface):
    """Fills a named place in Portal's pages (`{% plugin_block "<place>" %}`): a plugin has `name`
    (the place, e.g. 'NavigationArchivePlugin'), `plugin_guid`, and
    `return_string(self, tagname, *args)` returning `{'guid': ..., 'template': ...}`, the template
    Portal renders there with the page's context."""
