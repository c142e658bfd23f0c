"""push possession: which namespace holds which blob

Revision ID: 0009
Revises: 0008
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'namespace_blobs',
        sa.Column('namespace', sa.String(length=100), nullable=False),
        sa.Column('digest', sa.String(length=80), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('namespace', 'digest'),
    )
    # Every namespace holds the blobs of its committed versions; uploads to still-open versions are sent again.
    op.execute(
        "INSERT INTO namespace_blobs (namespace, digest, created_at) "
        "SELECT a.namespace, f.digest, COALESCE(MIN(v.committed_at), MIN(v.created_at)) FROM version_files f "
        "JOIN versions v ON v.id = f.version_id JOIN artifacts a ON a.id = v.artifact_id "
        "WHERE v.state = 'committed' GROUP BY a.namespace, f.digest"
    )


def downgrade() -> None:
    op.drop_table('namespace_blobs')
