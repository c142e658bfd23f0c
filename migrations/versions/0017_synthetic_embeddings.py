"""synthetic embeddings: the optional semantic near-duplicate layer (issue 17)

Revision ID: 0017
Revises: 0015

``synthetic_embeddings`` holds one float16 unit vector per record of a dataset registered as synthetic
(registry.synthetic.semantic), with the model that made it, for matching paraphrases and heavy edits. Only
written when ``MIR_SYNTHETIC_SEMANTIC`` is on; nothing else changes. Downgrading drops the vectors (a
dataset analysed again gets them back).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('synthetic_embeddings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('ordinal', sa.Integer(), nullable=False),
    sa.Column('generator_ref', sa.String(length=400), nullable=False),
    sa.Column('model_key', sa.String(length=64), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['versions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('synthetic_embeddings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_synthetic_embeddings_version_id'), ['version_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('synthetic_embeddings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_synthetic_embeddings_version_id'))
    op.drop_table('synthetic_embeddings')
