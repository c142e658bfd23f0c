"""The naming rules as JSON Schema patterns (what the OpenAPI document declares and FastAPI enforces) accept
exactly the names the registry accepts: 1-100 (versions 1-128) of the allowed characters, starting and ending
with a letter or digit, no "..", nothing after a trailing newline."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from registry.core.names import SEGMENT_PATTERN, VERSION_PATTERN, InvalidNameError, validate_segment, validate_version

_NAMEISH = st.text(alphabet="ab09._-+\n/ Z", max_size=140)


def _rule(value: str, allowed: str, longest: int) -> bool:
    """The rule as prose says it, written independently of the patterns."""
    return (
        0 < len(value) <= longest
        and all(c.isascii() and (c.isalnum() or c in allowed) for c in value)
        and value[0].isalnum() and value[-1].isalnum()
        and ".." not in value
    )


def _accepts(check: object, value: str) -> bool:
    try:
        check(value)  # type: ignore[operator]
    except InvalidNameError:
        return False
    return True


@given(_NAMEISH)
def test_segment_pattern_is_the_rule(value: str) -> None:
    expected = _rule(value, "._-", 100)
    assert (re.fullmatch(SEGMENT_PATTERN, value) is not None and len(value) <= 100) == expected
    assert _accepts(lambda v: validate_segment(v, "name"), value) == expected


@given(_NAMEISH)
def test_version_pattern_is_the_rule(value: str) -> None:
    expected = _rule(value, "._+-", 128)
    assert (re.fullmatch(VERSION_PATTERN, value) is not None and len(value) <= 128) == expected
    assert _accepts(validate_version, value) == expected


def test_known_names() -> None:
    for good in ("a", "acme", "sentiment-bert", "v1.2.0", "a.b-c_d", "0"):
        assert re.fullmatch(SEGMENT_PATTERN, good)
    for bad in ("", "-a", "a-", "a..b", ".a", "a.", "a b", "a\n", "a/b"):
        assert not _accepts(lambda v: validate_segment(v, "name"), bad)
    assert _accepts(validate_version, "1.0+cu121")
