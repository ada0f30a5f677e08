"""The README's settings table lists every setting of SftpConfig, and no other."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
from archive_core_sftp.config import SftpConfig

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_settings_table_lists_every_setting_and_no_other() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Settings\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, "drivers/sftp/README.md has no '## Settings' section"
    documented = re.findall(r"^\| `([a-z0-9_]+)` \|", match.group(1), re.M)
    declared = [field.name for field in attrs.fields(SftpConfig)]
    assert sorted(documented) == sorted(declared)
    assert len(documented) == len(set(documented)), "a setting is listed twice"
