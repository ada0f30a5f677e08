"""External ids: the self-describing URIs Portal stores, `<scheme>://<target>/<locator>`."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, unquote

import attrs

from archive_core.errors import ArchiveCoreError


@attrs.frozen(kw_only=True)
class ExternalId:
    """Names one archived copy well enough to restore it without the catalog."""

    scheme: str
    target: str
    locator: str

    def __str__(self) -> str:
        return self.formatter(scheme=self.scheme, target=self.target)(self.locator)

    @staticmethod
    def formatter(*, scheme: str, target: str) -> Callable[[str], str]:
        """The external id of each locator on one target (its prefix quoted once, not per file)."""
        # Percent-encode so spaces, `#`, `?` and non-ASCII survive Portal and URI parsers;
        # `/` stays readable because locators are paths.
        prefix = f"{scheme}://{quote(target, safe='')}/"
        return lambda locator: prefix + quote(locator, safe="/")

    @classmethod
    def parse(cls, text: str) -> ExternalId:
        scheme, sep, rest = text.partition("://")
        target, slash, locator = rest.partition("/")
        if not sep or not scheme or not target or not slash or not locator:
            raise ArchiveCoreError(
                f"External id {text!r} is not an archive-core id "
                "(expected <driver>://<target>/<path>)."
            )
        return cls(scheme=scheme, target=unquote(target), locator=unquote(locator))
