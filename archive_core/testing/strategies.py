"""Hypothesis strategies for awkward FileSets, for the kit and for driver authors' own tests.

A strategy draws `FileSpec` values (what to put on disk), and `FileSpec.on(harness)` writes
the file and returns the FileSet Portal would pass for it:

    @given(batches(max_size=kit.subject.max_file_size))
    def test_my_property(batch):
        file_sets = [spec.on(kit) for spec in batch]
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import strategies as st

from archive_core.testing.fileset import FileSet

#: Name bytes the kit stays under, leaving room for Portal's `_<item_id>_<sha1>` suffix.
NAME_BYTES = 180


@attrs.frozen(kw_only=True)
class FileSpec:
    """One file to make: its name, the folders above it, and its bytes or sparse size."""

    name: str
    folders: tuple[str, ...] = ()
    content: bytes | None = None
    sparse_size: int | None = None  # zeros with one marker byte at the end, when no content

    def on(self, harness: Any) -> FileSet:
        return harness.media(
            self.name,
            self.content,
            size=self.sparse_size,
            folder="/".join(self.folders) or None,
        )


def _fits(name: str) -> bool:
    return name not in (".", "..") and len(name.encode("utf-8", "surrogatepass")) <= NAME_BYTES


def file_names() -> st.SearchStrategy[str]:
    """Names a real storage may hold: unicode, spaces, dots, dashes; never '/' or NUL."""
    characters = st.characters(
        blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\0", max_codepoint=0x1FFFF
    )
    plain = st.text(characters, min_size=1, max_size=40).filter(_fits)
    shaped = st.sampled_from(
        [
            "clip.mov",
            "interview take 1.mov",
            "Überblick_proxy.mp4",
            "日本語のファイル.wav",
            ".hidden",
            "no_extension",
            "many.dots.in.name.tar.gz",
            " leading and trailing ",
            "a" * NAME_BYTES,
        ]
    )
    return st.one_of(shaped, plain)


def folders() -> st.SearchStrategy[tuple[str, ...]]:
    """Folders above a file on Portal's storage, up to eight deep."""
    return st.lists(file_names(), max_size=8).map(tuple)


def contents(max_size: int) -> st.SearchStrategy[bytes]:
    return st.one_of(st.just(b""), st.binary(min_size=1, max_size=min(max_size, 64 * 1024)))


def file_specs(max_size: int) -> st.SearchStrategy[FileSpec]:
    """One awkward file: any name and depth, empty, small, or large and sparse."""
    small = st.builds(FileSpec, name=file_names(), folders=folders(), content=contents(max_size))
    sparse = st.builds(
        FileSpec,
        name=file_names(),
        folders=folders(),
        sparse_size=st.integers(min_value=1, max_value=max(max_size, 1)),
    )
    return st.one_of(small, small, sparse)


def batches(max_size: int, *, max_files: int = 12) -> st.SearchStrategy[list[FileSpec]]:
    """A batch as Portal hands it over: several files, sometimes the same bytes twice.

    Two FileSets with one content are two items sharing a sha1: each must get its own copy.
    """
    files = st.lists(file_specs(max_size), min_size=1, max_size=max_files)

    def with_duplicate(specs: list[FileSpec]) -> st.SearchStrategy[list[FileSpec]]:
        return st.sampled_from(specs).map(lambda spec: [*specs, spec])

    return st.one_of(files, files.flatmap(with_duplicate))
