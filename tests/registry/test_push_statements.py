"""The statements a small push costs: what the open-and-commit request no longer asks the database twice.

Each statement is a round trip and, in SQLAlchemy and the driver, a fraction of a millisecond of the API's
CPU; under concurrent pushes that CPU is the registry's throughput. These tests pin the statements removed,
by what they are, not by a total that any new feature would have to renegotiate.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from registry.artifacts.models import Blob, Version
from registry.artifacts.versions import COMMITTED, find_by_ref, get_or_create_artifact, move_alias, open_version
from registry.auth.models import ApiToken
from registry.auth.tokens import authenticate, create_token
from registry.core.context import RegistryContext
from registry.core.db import insert_new_rows, insert_unless_present, make_engine, make_session_factory
from registry.core.settings import Settings
from registry.server.app import create_app
from registry.trust import signatures
from registry.trust.models import VersionSignature
from signing.keys import generate_private_key
from signing.manifest import FileEntry, Manifest
from signing.sign import sign_manifest
from tests.support.service import Reg


@pytest.fixture
def ctx(reg: Reg, db_url: str, tmp_path: Path) -> Iterator[RegistryContext]:
    settings = Settings(data_dir=tmp_path, database_url=db_url)
    engine = make_engine(db_url)
    context = RegistryContext(settings=settings, engine=engine, sessions=make_session_factory(engine), blobs=reg.blobs)
    assert context.signer.key_id  # loaded before any request, as `mir serve` does (its own transaction)
    yield context
    engine.dispose()


@pytest.fixture
def token(ctx: RegistryContext) -> str:
    with ctx.transaction() as s:
        _row, secret = create_token(s, "pusher", ["admin"], created_by="test")
    return secret


def _manifest(content: bytes, path: str = "weights.bin") -> Manifest:
    return Manifest.from_entries([FileEntry(path=path, size=len(content),
                                     digest="sha256:" + hashlib.sha256(content).hexdigest())])


class Statements:
    """Every statement the engine sends, in order (SQL text, upper-cased)."""

    def __init__(self) -> None:
        self.sql: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.sql.append(" ".join(statement.split()).upper())

    def matching(self, start: str, table: str = "") -> list[str]:
        return [s for s in self.sql if s.startswith(start) and table.upper() in s]


def _push(client: TestClient, token: str, version: str, content: bytes) -> dict[str, Any]:
    manifest = _manifest(content)
    body = {"version": version, "manifest": manifest.to_dict(), "commit": True,
            "inline": {manifest.files[0].digest: base64.b64encode(content).decode()}}
    answer = client.post("/v1/artifacts/acme/model/versions", json=body,
                         headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_an_inline_push_asks_for_each_row_once_and_needs_no_savepoint(ctx: RegistryContext, token: str) -> None:
    with TestClient(create_app(ctx.settings, ctx)) as client:
        _push(client, token, "v1", b"first weights")
        seen = Statements()
        event.listen(ctx.engine, "before_cursor_execute", seen)
        try:
            answer = _push(client, token, "v2", b"second weights")
        finally:
            event.remove(ctx.engine, "before_cursor_execute", seen)
    assert answer["committed"] is True and answer["version"]["aliases"] == ["latest"]
    assert not seen.matching("SAVEPOINT"), "the version and the countersignature insert without savepoints"
    # The blobs are looked up once, at the open; the commit trusts what this transaction found and stored.
    assert len(seen.matching("SELECT", "FROM BLOBS")) == 1
    # find_version once; @latest's previous version comes with the alias row (a join), not by a second query.
    assert len(seen.matching("SELECT", "FROM VERSIONS")) == 1
    assert len(seen.matching("SELECT", "FROM ALIASES")) == 2  # is v2 an alias's name; where @latest points
    # The answer's aliases are known from the move: no query lists them.
    assert not [s for s in seen.sql if "FROM ALIASES JOIN VERSIONS" in s]


def test_every_statement_of_a_warm_push_is_compiled_once_and_cached(ctx: RegistryContext, token: str) -> None:
    """A statement that carries its rows (``insert(...).values([...])``) has no cache key: SQLAlchemy compiled
    the push's four row inserts (blob, chunk list, holding, countersignature) afresh every time, a fifth of its
    CPU. Rows now travel as parameters of a cached statement."""
    uncached: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        compiled = context is not None and context.compiled is not None  # not driver SQL such as BEGIN IMMEDIATE
        if compiled and context.cache_hit == context.dialect.NO_CACHE_KEY:
            uncached.append(" ".join(statement.split())[:120])

    with TestClient(create_app(ctx.settings, ctx)) as client:
        _push(client, token, "v1", b"first weights")
        event.listen(ctx.engine, "after_cursor_execute", note)
        try:
            _push(client, token, "v2", b"second weights")
        finally:
            event.remove(ctx.engine, "after_cursor_execute", note)
    assert uncached == []


def test_rows_inserted_as_parameters_report_only_the_new_ones(ctx: RegistryContext) -> None:
    """Many rows in one call, some already present: exactly the new keys come back, on both backends."""
    rows = [{"digest": f"sha256:{i:064x}", "size": i, "blake3": None} for i in range(5)]
    with ctx.transaction() as s:
        insert_unless_present(s, Blob, rows[1])
        assert insert_new_rows(s, Blob, rows, "digest") == {r["digest"] for r in rows} - {rows[1]["digest"]}
        assert insert_new_rows(s, Blob, rows, "digest") == set()
        assert insert_new_rows(s, Blob, [], "digest") == set()
    with ctx.transaction() as s:
        assert sorted(s.scalars(select(Blob.size).where(Blob.digest.in_([r["digest"] for r in rows])))) == [
            0, 1, 2, 3, 4]


def test_a_retried_inline_push_answers_with_every_alias_of_its_version(ctx: RegistryContext, token: str) -> None:
    with TestClient(create_app(ctx.settings, ctx)) as client:
        first = _push(client, token, "v1", b"weights")
        answer = client.put("/v1/artifacts/acme/model/aliases/prod", json={"version": "v1"},
                            headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code in (200, 201), answer.text
        again = _push(client, token, "v1", b"weights")  # the first answer was lost: the same version comes back
    assert first["version"]["aliases"] == ["latest"]
    assert again["committed"] is True and again["version"]["aliases"] == ["latest", "prod"]


def test_the_token_look_up_runs_outside_any_transaction(ctx: RegistryContext, token: str) -> None:
    seen = Statements()
    event.listen(ctx.engine, "before_cursor_execute", seen)
    try:
        principal = authenticate(ctx, token)
    finally:
        event.remove(ctx.engine, "before_cursor_execute", seen)
    assert principal.name == "pusher"
    assert [s for s in seen.sql if "API_TOKENS" in s] and not seen.matching("BEGIN")


def test_the_look_up_still_notes_when_a_token_was_last_used(ctx: RegistryContext, token: str) -> None:
    with ctx.transaction() as s:
        assert s.scalar(select(ApiToken.last_used_at).where(ApiToken.name == "pusher")) is None
    authenticate(ctx, token)
    with ctx.transaction() as s:
        assert s.scalar(select(ApiToken.last_used_at).where(ApiToken.name == "pusher")) is not None


def test_a_token_look_up_does_not_wait_for_a_writer(ctx: RegistryContext, token: str) -> None:
    """On SQLite every transaction takes the one write lock at BEGIN; a look-up in autocommit takes none, so
    authenticating a request never queues behind a long write (PostgreSQL readers never wait for writers)."""
    authenticate(ctx, token)  # its use is noted (a write) at most once a minute: this look-up writes nothing
    done = threading.Event()

    def look_up() -> None:
        authenticate(ctx, token)
        done.set()

    with ctx.transaction() as writer:
        writer.execute(select(Version.id)).all()  # BEGIN IMMEDIATE: the write lock is held until the with ends
        reader = threading.Thread(target=look_up)
        reader.start()
        finished = done.wait(timeout=20)  # the busy timeout is 30 s: a look-up that waited would still wait
    reader.join()
    assert finished, "the token look-up waited for the write lock"


def test_a_key_signs_a_version_once_and_keeps_its_first_signature(ctx: RegistryContext) -> None:
    manifest = _manifest(b"signed weights")
    key = generate_private_key()
    first, second = (sign_manifest(manifest, key, model_name=label) for label in ("first", "second"))
    with ctx.transaction() as s:
        artifact = get_or_create_artifact(s, "acme", "model", "model", "test")
        version, _ = open_version(s, ctx.blobs, artifact, "v1", manifest, actor="test")
        assert signatures.attach(s, version, first, ["k1", "k2", "k1"], origin=signatures.PUSHER,
                                 actor="test") == ["k1", "k2"]
        assert signatures.attach(s, version, second, ["k2", "k3"], origin=signatures.PUSHER,
                                 actor="test") == ["k3"]
    with ctx.transaction() as s:
        rows = s.execute(select(VersionSignature.key_id, VersionSignature.envelope)
                         .order_by(VersionSignature.id)).all()
    assert [kid for kid, _ in rows] == ["k1", "k2", "k3"]
    assert [env for kid, env in rows if kid == "k2"] == [first.to_json().decode()]


def test_opening_a_version_another_push_just_opened_resumes_it(ctx: RegistryContext) -> None:
    manifest = _manifest(b"raced weights")
    with ctx.transaction() as s:
        get_or_create_artifact(s, "acme", "model", "model", "test")
    results: list[tuple[int, bool]] = []

    def second_open() -> None:
        with ctx.transaction() as s:
            artifact = get_or_create_artifact(s, "acme", "model", "model", "test")
            version, resumed = open_version(s, ctx.blobs, artifact, "v1", manifest, actor="second")
            results.append((version.id, resumed))

    with ctx.transaction() as s:
        artifact = get_or_create_artifact(s, "acme", "model", "model", "test")
        first, resumed = open_version(s, ctx.blobs, artifact, "v1", manifest, actor="first")
        assert not resumed and [f.path for f in first.files] == ["weights.bin"]
        racer = threading.Thread(target=second_open)
        racer.start()  # on PostgreSQL its insert waits for this transaction; on SQLite its BEGIN does
        racer.join(timeout=1)
        first_id = first.id
    racer.join()
    assert results == [(first_id, True)]


def test_a_version_opened_and_committed_by_one_request_is_not_looked_up_again(
    ctx: RegistryContext, token: str
) -> None:
    """Nothing but the open itself can have attached signatures or lineage to a version no other transaction
    sees yet: the commit neither re-reads its signatures nor its lineage, and its events go in one statement."""
    with TestClient(create_app(ctx.settings, ctx)) as client:
        _push(client, token, "v1", b"first weights")  # the artifact is created (and audited) here
        seen = Statements()
        event.listen(ctx.engine, "before_cursor_execute", seen)
        try:
            _push(client, token, "v2", b"second weights")
        finally:
            event.remove(ctx.engine, "before_cursor_execute", seen)
    assert not seen.matching("SELECT", "FROM VERSION_SIGNATURES")
    assert not seen.matching("SELECT", "FROM LINEAGE_EDGES")
    if ctx.engine.dialect.name == "postgresql":  # SQLite appends each event to the log at once
        assert len(seen.matching("INSERT INTO AUDIT_QUEUE")) == 1


def test_an_alias_moved_twice_in_one_transaction_resolves_to_where_it_points_now(ctx: RegistryContext) -> None:
    """The alias row is now read with its version loaded (one query): a later look-up in the same transaction,
    which finds that row in the session, follows the version it points at now."""
    with ctx.transaction() as s:
        artifact = get_or_create_artifact(s, "acme", "model", "model", "test")
        made = []
        for name in ("v1", "v2"):
            version, _ = open_version(s, ctx.blobs, artifact, name, _manifest(name.encode()), actor="test")
            version.state = COMMITTED  # what the commit would set; its blob checks are not the point here
            made.append(version)
        move_alias(s, artifact, "prod", made[0], actor="test")
        move_alias(s, artifact, "prod", made[1], actor="test")
        assert find_by_ref(s, artifact, "prod") is made[1]
    with ctx.transaction() as s:
        artifact = get_or_create_artifact(s, "acme", "model", "model", "test")
        found = find_by_ref(s, artifact, "prod")
        assert found is not None and found.version == "v2"
