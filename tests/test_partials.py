"""The one temporary-name type: what it formats it parses back, cut names included."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from archive_core import workers
from archive_core.naming import NAME_MAX
from archive_core.transfer import PartialName, remove_partials, temporary_name

names = st.text(
    alphabet=st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=300,
)


@given(name=names)
def test_a_fresh_name_parses_back_to_itself_fits_name_max_and_is_for_its_name(name: str) -> None:
    partial = PartialName.fresh(name)
    text = str(partial)
    assert PartialName.parse(text) == partial
    assert len(os.fsencode(text)) <= NAME_MAX
    assert text.startswith(".") and text.endswith(".partial")
    assert partial.is_for(name)
    me = workers.current()
    assert (partial.host, partial.pid) == (me.host, me.pid)


def test_a_long_name_is_cut_at_its_end_and_still_matched_by_the_part_kept() -> None:
    long_name = "é" * 120 + "_VX-1.mov"  # 249 bytes: cut, and mid-character at that
    partial = PartialName.fresh(long_name)
    assert len(os.fsencode(str(partial))) == NAME_MAX
    assert partial.cut and long_name.encode().startswith(os.fsencode(partial.name))
    assert partial.is_for(long_name)
    assert not partial.is_for("other" + long_name)
    assert PartialName.parse(str(partial)) == partial


def test_a_name_that_fits_is_kept_whole_and_matches_only_itself() -> None:
    partial = PartialName.fresh("clip.v2.mov")
    assert partial.name == "clip.v2.mov" and not partial.cut
    assert partial.is_for("clip.v2.mov")
    assert not partial.is_for("clip.v2.mov.extra") and not partial.is_for("clip.v2")


def test_each_fresh_name_is_another() -> None:
    assert len({temporary_name("clip.mov") for _ in range(100)}) == 100


def test_only_temporary_names_parse() -> None:
    for entry in (
        "clip.mov",
        ".hidden",
        ".x.partial",  # too few fields
        ".clip.mov.host.notapid.0a1b.partial",
        "clip.mov.host.12.0a1b.partial",  # not hidden
        ".clip.mov.host.12.0a1b.partial.bak",
    ):
        assert PartialName.parse(entry) is None, entry
    parsed = PartialName.parse(".clip.v2.mov.other-host.4242.0a1b2c3d0.partial")
    assert parsed == PartialName(name="clip.v2.mov", host="other-host", pid=4242, token="0a1b2c3d0")


def test_remove_partials_serves_several_names_of_one_directory_with_one_listing(
    tmp_path: Path,
) -> None:
    dead = "otherhost:77"
    theirs = [f".{n}.otherhost.77.9.partial" for n in ("a.mov", "b.mov")]
    kept = [".c.mov.otherhost.77.9.partial", ".a.mov.otherhost.78.9.partial", "a.mov"]
    for entry in theirs + kept:
        (tmp_path / entry).write_bytes(b"x")
    assert sorted(remove_partials(tmp_path, ["a.mov", "b.mov"], made_by=[dead])) == theirs
    assert sorted(os.listdir(tmp_path)) == sorted(kept)
