"""synthetic fingerprints keep a passage sample (issue 17)

Revision ID: 0013
Revises: 0012

``synthetic_fingerprints.passages``: the record's sampled word-shingle hashes (little-endian uint64), used to
find its text inside truncated or re-chunked copies (``scanners.contamination.passages``). Rows written before
have none and keep matching at record level only, until their dataset is analysed again.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('synthetic_fingerprints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('passages', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('synthetic_fingerprints', schema=None) as batch_op:
        batch_op.drop_column('passages')
