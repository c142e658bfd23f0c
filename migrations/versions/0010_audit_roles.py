"""audit log protection for a separate service role; scan history and rescans

Revision ID: 0010
Revises: 0009

``audit_state`` holds the log size the next append starts from. On PostgreSQL a trigger now lets it move
only forward, to exactly the number of entries the log holds, and refuses INSERT, DELETE and TRUNCATE, so
the service role (see registry.server.db_roles) can advance it by appending but never roll the log back.

Scan results keep their history: a rescan adds a result instead of being skipped because one exists.
``scan_jobs.rescan`` marks jobs that re-run the scanners on every blob; ``versions.scanner_version`` is the
scanner version of the version's last finished scan, so workers can queue rescans after a scanner upgrade.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


STATE_FUNCTION = """
CREATE FUNCTION mir_audit_state_forward() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    logged bigint;
BEGIN
    SELECT coalesce(max(leaf_index) + 1, 0) INTO logged FROM audit_entries;
    IF NEW.id <> OLD.id OR NEW.size < OLD.size OR NEW.size <> logged THEN
        RAISE EXCEPTION 'mir audit log is append-only: audit_state may only advance to the % entries appended '
                        '(refused % -> %)', logged, OLD.size, NEW.size;
    END IF;
    RETURN NEW;
END $$
"""


def upgrade() -> None:
    with op.batch_alter_table('scan_results', schema=None) as batch_op:
        batch_op.drop_constraint('uq_scan_results_blob', type_='unique')
        batch_op.create_index('ix_scan_results_blob_scanner', ['blob_digest', 'scanner', 'scanner_version', 'id'],
                              unique=False)
    with op.batch_alter_table('scan_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rescan', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scanner_version', sa.String(length=32), nullable=True))
    # Every scan finished before this revision was made by scanner version "1".
    op.execute("UPDATE versions SET scanner_version = '1' WHERE scan_status IS NOT NULL AND scan_status <> 'pending'")

    if op.get_bind().dialect.name == "postgresql":
        op.execute(STATE_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_state_forward_only BEFORE UPDATE ON audit_state "
            "FOR EACH ROW EXECUTE FUNCTION mir_audit_state_forward()"
        )
        op.execute(
            "CREATE TRIGGER audit_state_append_only BEFORE INSERT OR DELETE OR TRUNCATE ON audit_state "
            "FOR EACH STATEMENT EXECUTE FUNCTION mir_refuse_audit_rewrite()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_state_append_only ON audit_state")
        op.execute("DROP TRIGGER IF EXISTS audit_state_forward_only ON audit_state")
        op.execute("DROP FUNCTION IF EXISTS mir_audit_state_forward()")
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.drop_column('scanner_version')
    with op.batch_alter_table('scan_jobs', schema=None) as batch_op:
        batch_op.drop_column('rescan')
    # Keep only the latest result per blob and scanner version, as the unique constraint requires.
    op.execute(
        "DELETE FROM scan_results WHERE id NOT IN (SELECT max(id) FROM scan_results "
        "GROUP BY blob_digest, scanner, scanner_version)"
    )
    with op.batch_alter_table('scan_results', schema=None) as batch_op:
        batch_op.drop_index('ix_scan_results_blob_scanner')
        batch_op.create_unique_constraint('uq_scan_results_blob', ['blob_digest', 'scanner', 'scanner_version'])
