"""alias tags: aliases that never move once made

Revision ID: 0011
Revises: 0010

``aliases.tag`` marks an alias created as a tag (the Hugging Face ``create_tag``): the service refuses to move
or delete it on every route. Existing aliases stay movable.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tag', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.drop_column('tag')
