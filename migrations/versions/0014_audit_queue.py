"""audit queue: changes record events without waiting for the log's lock

Revision ID: 0014
Revises: 0013

``audit_queue`` holds events whose transaction has committed but which the sequencer
(registry.audit.sequencer) has not yet appended to the Merkle log; it appends them in batches, in ``id``
order. The service role may insert, read and delete queued events, never change one
(registry.server.db_roles).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_queue',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('namespace', sa.String(length=100), nullable=True),
    sa.Column('name', sa.String(length=100), nullable=True),
    sa.Column('version', sa.String(length=128), nullable=True),
    sa.Column('details', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    queued = op.get_bind().scalar(sa.text("SELECT count(*) FROM audit_queue"))
    if queued:
        raise RuntimeError(f"{queued} audit event(s) are still queued: start `mir serve` once (it appends them "
                           "to the log) before downgrading")
    op.drop_table('audit_queue')
