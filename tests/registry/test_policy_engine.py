"""The pure policy engine and the policy document's schema (no server, no database)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.core.errors import ApiError
from registry.policy.documents import parse_policy
from registry.policy.engine import (
    CLOCK_SKEW,
    DEFAULT_BUNDLE_MAX_AGE,
    DEFAULT_POLICY,
    Facts,
    PolicyBody,
    decide,
    facts_from_attested,
)

GOOD = Facts(artifact="acme/llm", version="1", signers=frozenset({"k1"}), scan_status="clean",
             formats={"model.safetensors": "safetensors", "config.json": "text"}, quarantine=None)


def failing(doc: PolicyBody, facts: Facts, **kw: timedelta) -> set[str]:
    return {c.check for c in decide(doc, facts, **kw).checks if not c.ok}


def test_default_policy_allows_only_signed_clean_safetensors() -> None:
    decision = decide(DEFAULT_POLICY, GOOD)
    assert decision.decision == "allow"
    assert [c.check for c in decision.checks] == ["policy scope", "signers", "scan", "formats", "quarantine"]
    assert failing(DEFAULT_POLICY, replace(GOOD, signers=frozenset())) == {"signers"}
    assert failing(DEFAULT_POLICY, replace(GOOD, scan_status=None)) == {"scan"}
    assert failing(DEFAULT_POLICY, replace(GOOD, formats={"model.bin": "pickle"})) == {"formats"}
    assert failing(DEFAULT_POLICY, replace(GOOD, formats={"model.safetensors": None})) == {"formats"}
    assert failing(DEFAULT_POLICY, replace(GOOD, formats={})) == {"formats"}
    held = {"status": "affected", "sources": [{"version": "acme/base@1", "reason": "poisoned"}]}
    decision = decide(DEFAULT_POLICY, replace(GOOD, quarantine=held))
    assert decision.decision == "deny" and "poisoned" in decision.checks[-1].detail


def test_an_artifact_outside_the_glob_gets_the_default_not_no_checks() -> None:
    lax = PolicyBody.model_validate({"artifacts": "core-*", "required_signers": {"threshold": 0},
                                     "allowed_formats": ["pickle"], "refuse_quarantined_lineage": False})
    unsigned_pickle = replace(GOOD, signers=frozenset(), formats={"model.bin": "pickle"},
                              quarantine={"status": "quarantined", "sources": [{"reason": "x"}]})
    assert failing(lax, replace(unsigned_pickle, artifact="acme/core-llm")) == set()
    outside = decide(lax, unsigned_pickle)
    assert outside.policy == DEFAULT_POLICY and "built-in default" in outside.checks[0].detail
    assert failing(lax, unsigned_pickle) == {"signers", "formats", "quarantine"}


@given(glob=st.sampled_from(["core-*", "x?", "[ab]*", "llm-v[0-9]"]), signed=st.booleans(),
       fmt=st.sampled_from(["safetensors", "pickle", None]), status=st.sampled_from(["clean", "malicious", None]))
def test_outside_the_glob_is_exactly_the_default(glob: str, signed: bool, fmt: str | None, status: str | None) -> None:
    doc = PolicyBody.model_validate({"artifacts": glob, "required_signers": {"threshold": 0},
                                     "allowed_formats": ["safetensors", "pickle"],
                                     "required_scan_verdicts": ["clean", "malicious"]})
    facts = replace(GOOD, artifact="acme/zzz", signers=frozenset({"k"} if signed else ()), scan_status=status,
                    formats={"m": fmt})
    ours, default = decide(doc, facts), decide(DEFAULT_POLICY, facts)
    assert [(c.check, c.ok) for c in ours.checks] == [(c.check, c.ok) for c in default.checks]


def test_storage_check_from_corrupt_files() -> None:
    assert "storage" not in {c.check for c in decide(DEFAULT_POLICY, GOOD).checks}
    assert failing(DEFAULT_POLICY, replace(GOOD, corrupt_files=[])) == set()
    assert failing(DEFAULT_POLICY, replace(GOOD, corrupt_files=["model.safetensors"])) == {"storage"}


def test_bundle_age() -> None:
    week = timedelta(seconds=DEFAULT_BUNDLE_MAX_AGE)
    assert failing(DEFAULT_POLICY, replace(GOOD, bundle_age=week - timedelta(hours=1))) == set()
    assert failing(DEFAULT_POLICY, replace(GOOD, bundle_age=week + CLOCK_SKEW * 2)) == {"bundle age"}
    assert failing(DEFAULT_POLICY, replace(GOOD, bundle_age=-CLOCK_SKEW * 2)) == {"bundle age"}
    assert failing(DEFAULT_POLICY, replace(GOOD, bundle_age=timedelta(0))) == set()
    hour = PolicyBody.model_validate({"bundle_max_age": 3600})
    assert failing(hour, replace(GOOD, bundle_age=timedelta(hours=2))) == {"bundle age"}
    assert failing(hour, replace(GOOD, bundle_age=timedelta(hours=2)), max_bundle_age=timedelta(days=1)) == set()


def test_attested_facts_fail_closed() -> None:
    facts = facts_from_attested("acme/llm", "1", {"scan": "garbage", "quarantine": [], "corrupt_files": "x"},
                                {"k1"}, paths=["model.safetensors"])
    assert facts.formats == {"model.safetensors": None} and facts.scan_status is None and facts.corrupt_files is None
    assert failing(DEFAULT_POLICY, facts) == {"scan", "formats"}


def test_policy_schema_bundle_max_age_and_strictness() -> None:
    assert parse_policy({}).bundle_max_age == DEFAULT_BUNDLE_MAX_AGE == 7 * 86400
    assert parse_policy({"bundle_max_age": 3600}).bundle_max_age == 3600
    for bad in ({"bundle_max_age": -1}, {"bundle_max_age": "7d"}, {"bundle_max_age": True},
                {"bundle_max_age": 1.5}, {"required_signers": {"threshold": "2"}}, {"bundle_max_ag": 60}):
        with pytest.raises(ApiError) as exc:
            parse_policy(bad)
        assert exc.value.status == 400 and exc.value.code == "invalid_policy"


TRUSTING = PolicyBody.model_validate({"allowed_formats": ["pickle"], "trusted_globals": ["mypkg.Model"]})
SKLEARNISH = replace(GOOD, scan_status="suspicious", formats={"model.pkl": "pickle", "config.json": "text"},
                     file_verdicts={"model.pkl": "suspicious", "config.json": "clean"},
                     unlisted_globals={"model.pkl": ["mypkg.Model"]})


def test_trusted_globals_lift_only_what_they_name() -> None:
    decision = decide(TRUSTING, SKLEARNISH)
    assert decision.decision == "allow", decision.checks
    scan = next(c for c in decision.checks if c.check == "scan")
    assert "suspicious, clean under this policy" in scan.detail and "mypkg.Model" in scan.detail
    # The default policy (or a namespace that trusts nothing) keeps the scan suspicious.
    assert "scan" in failing(PolicyBody.model_validate({"allowed_formats": ["pickle"]}), SKLEARNISH)
    # One more global the policy does not name: nothing is lifted.
    more = replace(SKLEARNISH, unlisted_globals={"model.pkl": ["mypkg.Model", "other.Thing"]})
    assert failing(TRUSTING, more) == {"scan"}


@pytest.mark.parametrize("change", [
    {"scan_status": "malicious"},  # never lifted, whatever the per-file summary says
    {"scan_status": "error"},
    {"scan_status": "pending"},
    {"file_verdicts": None},  # an old bundle without per-file verdicts
    {"file_verdicts": {"model.pkl": "suspicious", "config.json": None}},  # an unscanned file
    {"file_verdicts": {"model.pkl": "clean", "config.json": "clean"}},  # does not add up to the status
    {"file_verdicts": {"model.pkl": "suspicious", "config.json": "malicious"}},
    {"file_verdicts": {"model.pkl": "suspicious", "config.json": "bogus"}},
    {"unlisted_globals": {}},  # suspicious for something other than unlisted globals
    {"unlisted_globals": {"config.json": ["mypkg.Model"]}},  # names the wrong file
    {"contamination": "suspicious"},  # the dataset's contamination is not a global
    {"contamination": "error"},
], ids=repr)
def test_trusted_globals_fail_closed(change: dict[str, object]) -> None:
    assert "scan" in failing(TRUSTING, replace(SKLEARNISH, **change))  # type: ignore[arg-type]


def test_trusted_globals_from_attested_json_offline() -> None:
    attested = {"scan": {"status": "suspicious", "formats": {"model.pkl": "pickle"},
                         "verdicts": {"model.pkl": "suspicious", "ghost.pkl": "clean"},
                         "unlisted_globals": {"model.pkl": ["mypkg.Model", 7]}, "contamination": None}}
    facts = facts_from_attested("acme/llm", "1", attested, {"k1"}, paths=["model.pkl"])
    assert facts.file_verdicts == {"model.pkl": "suspicious"}
    assert facts.unlisted_globals == {"model.pkl": ["mypkg.Model"]}
    assert decide(TRUSTING, facts).decision == "allow"
    # A manifest file the attestation does not mention is unscanned: nothing lifts.
    facts = facts_from_attested("acme/llm", "1", attested, {"k1"}, paths=["model.pkl", "extra.pkl"])
    assert "scan" in failing(TRUSTING, facts)


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "posix.system", "subprocess.Popen",
                                  "mypkg.__class__", "mypkg.Model.__reduce__", "nodots", "mypkg.", "a b.c",
                                  "torch.load", "functools.partial", "__builtin__.getattr"])
def test_a_policy_cannot_trust_a_gadget(name: str) -> None:
    with pytest.raises(ApiError) as exc:
        parse_policy({"trusted_globals": [name]})
    assert exc.value.status == 400 and exc.value.code == "invalid_policy" and "trusted_globals" in exc.value.message
    assert parse_policy({"trusted_globals": ["mypkg.models.Custom"]}).trusted_globals == ["mypkg.models.Custom"]
