"""scan tasks: one per blob of a running scan job, so several workers share one version

Revision ID: 0016
Revises: 0014

``scan_tasks`` holds the blobs of each running scan job (registry.scanning.tasks). A job that was running
under the old worker (one worker scanned every blob itself) has no tasks; it goes back to ``queued`` so the
next worker expands it (stop the old workers before upgrading). Downgrading does the same the other way.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0014'  # re-chain onto 0015 once that lands
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('scan_tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('blob_digest', sa.String(length=80), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=200), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('previous_verdict', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['scan_jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'blob_digest', name='uq_scan_tasks_job_blob')
    )
    with op.batch_alter_table('scan_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_scan_tasks_state', ['state', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_scan_tasks_job_id'), ['job_id'], unique=False)
    op.execute("UPDATE scan_jobs SET state = 'queued', claimed_at = NULL, claimed_by = NULL WHERE state = 'running'")


def downgrade() -> None:
    op.execute("UPDATE scan_jobs SET state = 'queued', claimed_at = NULL, claimed_by = NULL WHERE state = 'running'")
    with op.batch_alter_table('scan_tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scan_tasks_job_id'))
        batch_op.drop_index('ix_scan_tasks_state')
    op.drop_table('scan_tasks')
