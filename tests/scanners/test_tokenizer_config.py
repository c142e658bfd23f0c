"""Chat templates in JSON configs (tokenizer_config.json): analysed like GGUF's, never rendered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanners import Limits, Verdict, scan_bytes, scan_path
from scanners.tokenizer_config import TextKeeper
from tests.scanners.chat_templates import CLEAN, MALICIOUS, SUSPICIOUS


def config(template: object, **extra: object) -> bytes:
    return json.dumps({"bos_token": "<s>", "model_max_length": 8192, "chat_template": template, **extra},
                      indent=2).encode()


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_real_templates_are_clean(name: str) -> None:
    report = scan_bytes(config(CLEAN[name]))
    assert (report.format, report.verdict) == ("text", Verdict.CLEAN), report.findings


@pytest.mark.parametrize("name", sorted(MALICIOUS))
def test_escapes_are_malicious(name: str) -> None:
    report = scan_bytes(config(MALICIOUS[name]))
    assert report.verdict is Verdict.MALICIOUS, report.findings
    assert all(f.symbol == "chat_template" for f in report.findings)


@pytest.mark.parametrize("name", sorted(SUSPICIOUS))
def test_odd_templates_are_suspicious(name: str) -> None:
    assert scan_bytes(config(SUSPICIOUS[name])).verdict is Verdict.SUSPICIOUS


def test_named_templates_are_each_analysed(tmp_path: Path) -> None:
    named = [{"name": "default", "template": CLEAN["chatml"]}, {"name": "tool_use", "template": MALICIOUS["globals"]}]
    path = tmp_path / "tokenizer_config.json"
    path.write_bytes(b"\xef\xbb\xbf\n  " + config(named))  # a BOM and blank lines before the object
    report = scan_path(path)
    assert report.verdict is Verdict.MALICIOUS
    assert {f.symbol for f in report.findings} == {"chat_template['tool_use']"}


@pytest.mark.parametrize("value", [5, {"template": "x"}, [{"name": "a"}], ["{{ x }}"]], ids=repr)
def test_a_template_of_the_wrong_shape_is_suspicious(value: object) -> None:
    report = scan_bytes(config(value))
    assert report.verdict is Verdict.SUSPICIOUS and "neither a template string" in report.findings[0].message


@pytest.mark.parametrize("data", [
    json.dumps({"other": MALICIOUS["globals"]}).encode(),  # no chat_template key: plain data
    json.dumps([{"chat_template": MALICIOUS["globals"]}]).encode(),  # not an object: loaders never read it
    b'{"chat_template": "{{ __class__ }}", broken',  # not JSON: no loader renders it
    b'# notes\n"chat_template": "{{ \'\'.__class__ }}"\n',  # prose that mentions the key
    json.dumps({"chat_template": None}).encode(),
], ids=["no-key", "array", "broken", "prose", "null"])
def test_other_text_stays_data(data: bytes) -> None:
    report = scan_bytes(data)
    assert (report.format, report.verdict) == ("text", Verdict.CLEAN), report.findings


def test_a_config_over_the_size_limit_is_not_kept_in_memory() -> None:
    keeper = TextKeeper(limit=100)
    keeper.add("{" + " " * 98)
    keeper.add("\"x\": 1}")
    assert keeper.text() is None and keeper.parts == []
    small = TextKeeper(limit=100)
    for part in ("  ", "\n", "{\"a\"", ": 1}"):
        small.add(part)
    assert small.text() == "  \n{\"a\": 1}"
    # Too large to keep, but it names a chat template: not analysed, so not clean (the key may straddle reads).
    big = scan_bytes(config(MALICIOUS["globals"]), limits=Limits(max_config_bytes=64))
    assert big.verdict is Verdict.SUSPICIOUS and "too large" in big.findings[0].message
    straddling = TextKeeper(limit=10)
    for part in ('{"aaaaaaaaaaaaa": 1, "chat_', 'template": "x"}'):
        straddling.add(part)
    assert straddling.too_big_with_key and straddling.text() is None
    assert scan_bytes(json.dumps({"x": "y" * 200}).encode(), limits=Limits(max_config_bytes=64)).verdict \
        is Verdict.CLEAN


def test_deeply_nested_json_is_not_a_crash() -> None:
    data = b'{"chat_template": "x", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    report = scan_bytes(data)
    assert report.format == "text" and report.verdict is not Verdict.ERROR
