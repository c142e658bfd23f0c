"""detector calibration samples: a namespace's labelled datasets calibrate the zero-shot detector (issue 17)

Revision ID: 0015
Revises: 0016

``synthetic_calibration_samples`` caches the zero-shot detector's scores of each labelled dataset's
calibration sample (registry.synthetic.calibration), so a namespace's calibration is refitted from stored
scores and only a newly labelled dataset is scored. Nothing else changes; downgrading drops the cache.

It follows 0016, which landed first: a database already at 0016 must still get this table, so the chain is
0014 -> 0016 -> 0015 (numbers are names here, not order; this migration needs nothing 0016 adds).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('synthetic_calibration_samples',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('model_key', sa.String(length=64), nullable=False),
    sa.Column('sampled', sa.Integer(), nullable=False),
    sa.Column('scores', sa.JSON(), nullable=False),
    sa.Column('error', sa.String(length=400), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['versions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('version_id', 'role', 'model_key', name='uq_synthetic_calibration_samples')
    )
    with op.batch_alter_table('synthetic_calibration_samples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_synthetic_calibration_samples_version_id'), ['version_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('synthetic_calibration_samples', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_synthetic_calibration_samples_version_id'))
    op.drop_table('synthetic_calibration_samples')
