"""Chunk lists: the same hashes however the bytes are split on the way in."""

from __future__ import annotations

import hashlib
import itertools

from hypothesis import given
from hypothesis import strategies as st

from registry.core.chunks import ChunkHasher, chunk_count, chunk_list_of


@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(min_value=0, max_value=400)),
       chunk_size=st.integers(min_value=1, max_value=64))
def test_any_split_gives_the_list_of_the_whole(data: bytes, cuts: list[int], chunk_size: int) -> None:
    hasher = ChunkHasher(chunk_size)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for start, end in itertools.pairwise(bounds):
        hasher.update(data[start:end])
    listed = hasher.finish()
    expected = [hashlib.sha256(data[i : i + chunk_size]).digest() for i in range(0, len(data), chunk_size)]
    assert listed == chunk_list_of(data, chunk_size)
    assert len(listed) == chunk_count(len(data), chunk_size) == len(expected)
    assert [listed.hash_of(i) for i in range(len(listed))] == expected


def test_finish_does_not_disturb_later_updates() -> None:
    hasher = ChunkHasher(4)
    hasher.update(b"abcdef")
    hasher.finish()
    hasher.update(b"gh")
    assert hasher.finish() == chunk_list_of(b"abcdefgh", 4)
