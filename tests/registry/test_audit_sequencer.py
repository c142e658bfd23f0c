"""The audit sequencer on both databases: concurrent appends land exactly once, in order, with valid proofs.

Changes queue their events in their own transaction; the sequencer appends every queued event in batches
(registry.audit.sequencer). These tests append from several threads and several processes at once and check
the log afterwards the way an auditor would: contiguous indexes, each event once, each transaction's events
in its order, each thread's transactions in its order, the entries reproducing the signed root, and every
inclusion proof verifying.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select

from registry.audit import log as audit
from registry.audit import sequencer
from registry.audit.models import MerkleNode, QueuedAuditEvent
from registry.core.context import RegistryContext
from registry.core.settings import Settings
from registry.core.tables import utcnow
from registry.server.migrate import ensure_schema
from signing.jcs import JCSError, canonicalize
from signing.merkle import InMemoryNodeStore, MerkleLog, leaf_hash, verify_inclusion
from signing.tree_head import verify_tree_head


def _context(db_url: str, data_dir: Path) -> RegistryContext:
    return RegistryContext.create(Settings(database_url=db_url, data_dir=data_dir))


@pytest.fixture
def ctx(db_url: str, tmp_path: Path) -> RegistryContext:
    context = _context(db_url, tmp_path / "data")
    ensure_schema(context.engine, db_url, auto_migrate=True)
    assert context.signer.key_id  # the key is made here, once, not raced for by the writers below
    return context


def _append(ctx: RegistryContext, writer: str, transactions: int) -> None:
    """``transactions`` transactions, each recording two events (``a`` then ``b``) about its own number."""
    for n in range(transactions):
        with ctx.transaction() as s:
            for part in ("a", "b"):
                audit.record(s, action="test.event", actor=writer, namespace="acme", name="seq",
                             details={"writer": writer, "n": n, "part": part})


def _append_in_process(db_url: str, data_dir: str, writer: str, transactions: int) -> None:
    ctx = _context(db_url, Path(data_dir))
    _append(ctx, writer, transactions)
    ctx.engine.dispose()


def _queued(ctx: RegistryContext) -> int:
    with ctx.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(QueuedAuditEvent)) or 0)


def _check_log(ctx: RegistryContext, writers: list[str], transactions: int) -> None:
    """What an auditor checks: every event once, in order, the root reproduced, every inclusion proof valid."""
    expected = len(writers) * transactions * 2
    with ctx.transaction() as s:
        entries = audit.list_entries(s, limit=expected + 10)
        signed = audit.current_tree_head(s, ctx.signer, "mir")
        head = verify_tree_head(signed, ctx.signer.public_key, key_id=ctx.signer.key_id)
        assert [e.leaf_index for e in entries] == list(range(expected)) and head.tree_size == expected
        rebuilt = MerkleLog(InMemoryNodeStore())
        seen: dict[str, list[tuple[int, str]]] = {w: [] for w in writers}
        for entry in entries:
            body = json.loads(entry.body)
            assert body["index"] == entry.leaf_index
            assert leaf_hash(entry.body.encode()).hex() == entry.leaf_hash
            rebuilt.append(entry.body.encode())
            seen[body["details"]["writer"]].append((body["details"]["n"], body["details"]["part"]))
            proof = audit.inclusion_proof(s, entry.leaf_index, expected)
            assert verify_inclusion(bytes.fromhex(entry.leaf_hash), entry.leaf_index, expected,
                                    [bytes.fromhex(h) for h in proof["proof"]], head.root_hash)
        assert rebuilt.root() == head.root_hash
    for writer in writers:
        # One writer's transactions are sequential: each committed (and was logged) before the next began.
        assert seen[writer] == [(n, part) for n in range(transactions) for part in ("a", "b")], writer
    assert _queued(ctx) == 0


def test_concurrent_appends_from_threads_land_once_in_order(ctx: RegistryContext) -> None:
    writers = [f"thread-{i}" for i in range(8)]
    errors: list[BaseException] = []

    def run(writer: str) -> None:
        try:
            _append(ctx, writer, 15)
        except BaseException as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    _check_log(ctx, writers, 15)


def test_concurrent_appends_from_processes_land_once_in_order(
    ctx: RegistryContext, db_url: str, tmp_path: Path
) -> None:
    """Separate processes (as API replicas and scan workers are) share the queue and help each other's passes."""
    spawn = multiprocessing.get_context("spawn")
    writers = [f"process-{i}" for i in range(3)]
    procs = [spawn.Process(target=_append_in_process, args=(db_url, str(tmp_path / "data"), w, 10)) for w in writers]
    for p in procs:
        p.start()
    _append(ctx, "parent", 10)
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    _check_log(ctx, [*writers, "parent"], 10)


def _queue_directly(ctx: RegistryContext, count: int, action: str) -> None:
    """Events as a process leaves them when it dies between its COMMIT and its pass: queued, not in the log."""
    with ctx.engine.begin() as conn:
        conn.execute(insert(QueuedAuditEvent), [
            {"at": utcnow(), "actor": "gone", "action": action, "details": canonicalize({"i": i}).decode()}
            for i in range(count)
        ])


def test_an_event_queued_by_a_process_that_died_is_appended_by_the_next_pass(ctx: RegistryContext) -> None:
    """A commit whose pass never ran (the process died right after COMMIT) loses nothing: it stays queued."""
    _queue_directly(ctx, 1, "test.orphan")
    with ctx.transaction() as s:
        assert audit.tree_size(s) == 0
    assert _queued(ctx) == 1
    with ctx.transaction() as s:
        audit.record(s, action="test.event", actor="next")
    with ctx.transaction() as s:
        assert [e.action for e in audit.list_entries(s)] == ["test.orphan", "test.event"]
    assert _queued(ctx) == 0


def test_integrate_works_in_bounded_batches(ctx: RegistryContext) -> None:
    """``mir serve`` appends what is queued at start; each transaction (or step) takes at most ``batch`` events."""
    _queue_directly(ctx, 10, "test.event")
    assert sequencer.integrate(ctx.engine, batch=3) == 10
    _queue_directly(ctx, 7, "test.more")
    with ctx.engine.begin() as conn:  # the SQLite path: inside the caller's transaction
        assert sequencer.integrate_here(conn, batch=3) == 7
    with ctx.transaction() as s:
        entries = audit.list_entries(s)
        assert [(e.action, json.loads(e.body)["details"]["i"]) for e in entries] == [
            *(("test.event", i) for i in range(10)), *(("test.more", i) for i in range(7))
        ]
        assert [e.leaf_index for e in entries] == list(range(17))
    assert sequencer.integrate(ctx.engine) == 0 and _queued(ctx) == 0


def test_rollback_and_bad_details_queue_nothing(ctx: RegistryContext) -> None:
    with pytest.raises(RuntimeError), ctx.transaction() as s:
        audit.record(s, action="test.event", actor="tester")
        raise RuntimeError("the change failed after recording")
    with pytest.raises(JCSError), ctx.transaction() as s:
        audit.record(s, action="test.event", actor="tester", details={"big": 2**60})  # no exact JSON number
    assert _queued(ctx) == 0
    with ctx.transaction() as s:
        assert audit.tree_size(s) == 0


def _actions(ctx: RegistryContext) -> list[str]:
    with ctx.transaction() as s:
        return [e.action for e in audit.list_entries(s, limit=100)]


def test_a_savepoint_that_rolls_back_takes_its_events_with_it(ctx: RegistryContext) -> None:
    """Events wait in the session until the commit writes them together; one recorded inside a savepoint is
    written at once, so rolling the savepoint back removes it while the transaction's others stay."""
    with ctx.transaction() as s:
        audit.record(s, action="test.before", actor="tester")
        with pytest.raises(RuntimeError), s.begin_nested():
            audit.record(s, action="test.undone", actor="tester")
            raise RuntimeError("the nested change failed")
        audit.record(s, action="test.after", actor="tester")
    assert _actions(ctx) == ["test.before", "test.after"]


def test_a_session_used_again_after_a_rollback_does_not_log_the_rolled_back_events(ctx: RegistryContext) -> None:
    session = ctx.sessions()
    try:
        audit.record(session, action="test.rolled_back", actor="tester")
        session.rollback()
        audit.record(session, action="test.kept", actor="tester")
        session.commit()
    finally:
        session.close()
    audit.settle(session)
    assert _actions(ctx) == ["test.kept"]


def test_merkle_node_reads_search_the_primary_key_on_both_databases(ctx: RegistryContext) -> None:
    """Every pass reads the log's frontier and every proof its path: each pair must be a primary-key search.
    SQLite answers a row-value ``IN (VALUES ...)`` by scanning the whole table (about two nodes per entry, under
    its one write lock on every pass), so it is asked an OR of pairs; PostgreSQL plans the pairs as index
    scans (asked with the sequential scan disabled, since a table this small would otherwise be scanned)."""
    with ctx.engine.begin() as conn:
        conn.execute(insert(MerkleNode), [{"level": level, "idx": idx, "hash": bytes(32)}
                                          for level in range(4) for idx in range(64 >> level)])
    sent: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, *_a: Any) -> None:
        if "merkle_nodes" in statement:
            sent.append((statement, parameters))

    keys = [(0, 5), (1, 9), (3, 7), (2, 15)]
    with ctx.engine.connect() as conn:
        event.listen(ctx.engine, "before_cursor_execute", capture)
        assert sorted(sequencer.SqlNodeStore(conn).get_many(keys)) == sorted(keys)
        event.remove(ctx.engine, "before_cursor_execute", capture)
        (statement, parameters), = sent
        if ctx.engine.dialect.name == "sqlite":
            plan = " | ".join(str(row[-1]) for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters))
            assert "SCAN merkle_nodes" not in plan and "SEARCH merkle_nodes USING INDEX" in plan, plan
        else:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = " | ".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
            assert "Seq Scan" not in plan and "merkle_nodes_pkey" in plan, plan
