"""The NUL guard's quick test agrees with its full one: a JSON text holds a NUL exactly when a string does."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from registry.web.nul_guard import json_has_nul

TEXT = st.text(alphabet=st.sampled_from(["\x00", "\\", "u", "U", "0", "a", '"', "é", "\x01"]), max_size=24)


@given(values=st.lists(TEXT, max_size=4), ascii_only=st.booleans())
def test_a_json_text_holds_a_nul_exactly_when_one_of_its_strings_does(values: list[str], ascii_only: bool) -> None:
    body = json.dumps({f"k{i}": v for i, v in enumerate(values)}, ensure_ascii=ascii_only).encode()
    assert json_has_nul(body) == any("\x00" in v for v in values)


def test_escapes_that_only_look_like_a_nul_pass_and_any_case_of_the_escape_is_caught() -> None:
    assert not json_has_nul(rb'{"a": "\\u0000"}')  # an escaped backslash, then the text u0000
    assert json_has_nul(rb'{"a": "\\\u0000"}')
    assert json_has_nul(rb'{"a": "\U0000"}')
    assert json_has_nul(b'{"a": "\x00"}')
    assert not json_has_nul(b'{"inline": "' + b"A" * 100_000 + b'"}')
