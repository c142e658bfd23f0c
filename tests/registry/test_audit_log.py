"""The audit log service on both databases: appends, proofs, tree heads, append-only enforcement."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from registry.audit import log as audit
from registry.core.context import RegistryContext
from registry.core.settings import Settings
from registry.server.migrate import ensure_schema
from signing.merkle import leaf_hash, verify_consistency, verify_inclusion
from signing.tree_head import verify_tree_head


@pytest.fixture
def ctx(db_url: str, tmp_path: Path) -> RegistryContext:
    settings = Settings(database_url=db_url, data_dir=tmp_path / "data")
    context = RegistryContext.create(settings)
    ensure_schema(context.engine, db_url, auto_migrate=True)
    return context


def test_appends_and_proofs_verify(ctx: RegistryContext) -> None:
    heads = {}
    for i in range(70):
        with ctx.transaction() as s:
            audit.record(s, action="test.event", actor="tester", namespace="acme", name="x", details={"i": i})
        if i in (0, 6, 31, 69):
            with ctx.transaction() as s:
                heads[i + 1] = audit.current_tree_head(s, ctx.signer, "mir").head
    with ctx.transaction() as s:
        entries = audit.list_entries(s, limit=1000)
        assert [e.leaf_index for e in entries] == list(range(70))
        for entry in entries:
            assert leaf_hash(entry.body.encode()).hex() == entry.leaf_hash
        final = heads[70]
        for index in (0, 1, 33, 64, 69):
            proof = audit.inclusion_proof(s, index, 70)
            assert verify_inclusion(bytes.fromhex(proof["leaf_hash"]), index, 70,
                                    [bytes.fromhex(h) for h in proof["proof"]], final.root_hash)
        for old in (1, 7, 32):
            proof = audit.consistency_proof(s, old, 70)
            assert verify_consistency(old, 70, heads[old].root_hash, final.root_hash,
                                      [bytes.fromhex(h) for h in proof["proof"]])


def test_tree_head_is_signed_by_the_registry_key(ctx: RegistryContext) -> None:
    with ctx.transaction() as s:
        audit.record(s, action="test.event", actor="tester")
    with ctx.transaction() as s:
        signed = audit.current_tree_head(s, ctx.signer, "mir")
        again = audit.current_tree_head(s, ctx.signer, "mir")
    assert signed.to_dict() == again.to_dict(), "one stored head per size, not a new signature per request"
    head = verify_tree_head(signed, ctx.signer.public_key, key_id=ctx.signer.key_id)
    assert head.tree_size == 1


def test_rollback_leaves_no_entry(ctx: RegistryContext) -> None:
    with pytest.raises(RuntimeError), ctx.transaction() as s:
        audit.record(s, action="test.event", actor="tester")
        raise RuntimeError("the change failed after recording")
    with ctx.transaction() as s:
        assert audit.tree_size(s) == 0 and audit.list_entries(s) == []


def test_postgres_refuses_update_and_delete(ctx: RegistryContext) -> None:
    with ctx.transaction() as s:
        audit.record(s, action="test.event", actor="tester")
    if ctx.engine.dialect.name != "postgresql":
        pytest.skip("the trigger exists on PostgreSQL; on SQLite the application never issues UPDATE/DELETE")
    for statement in ("UPDATE audit_entries SET actor = 'mallory'", "DELETE FROM audit_entries",
                      "UPDATE merkle_nodes SET hash = hash", "TRUNCATE audit_entries"):
        with pytest.raises(DBAPIError, match="append-only"), ctx.engine.begin() as conn:
            conn.execute(text(statement))


def test_private_key_is_encrypted_at_rest(ctx: RegistryContext) -> None:
    signer = ctx.signer
    with ctx.engine.connect() as conn:
        pem = conn.execute(text("SELECT encrypted_private_pem FROM registry_keys")).scalar_one()
    assert "ENCRYPTED PRIVATE KEY" in pem
    assert signer.key_id and "PRIVATE" not in signer.public_pem
