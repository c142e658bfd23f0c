"""blob integrity: corrupt marks and chunk hash lists

Revision ID: 0008
Revises: 0007
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('blobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('corrupt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('corrupt_reason', sa.Text(), nullable=True))
    op.create_table('blob_chunks',
    sa.Column('digest', sa.String(length=80), nullable=False),
    sa.Column('chunk_size', sa.Integer(), nullable=False),
    sa.Column('hashes', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['digest'], ['blobs.digest'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('digest')
    )


def downgrade() -> None:
    op.drop_table('blob_chunks')
    with op.batch_alter_table('blobs', schema=None) as batch_op:
        batch_op.drop_column('corrupt_reason')
        batch_op.drop_column('corrupt_at')
