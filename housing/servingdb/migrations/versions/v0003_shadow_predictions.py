"""Shadow predictions: a challenger's prediction names the served prediction it shadows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

# Only shadow rows enter the index: free for the served predictions.
SHADOW = sa.text("shadow_of IS NOT NULL")


def upgrade() -> None:
    # A nullable column without a default: an in-place ALTER on both SQLite and PostgreSQL.
    op.add_column("predictions", sa.Column("shadow_of", sa.String(), nullable=True))
    op.create_index(
        "ix_predictions_shadow_of",
        "predictions",
        ["shadow_of"],
        sqlite_where=SHADOW,
        postgresql_where=SHADOW,
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_shadow_of", table_name="predictions")
    # In place on SQLite too (3.35+), so the other partial indexes are kept as they are.
    op.drop_column("predictions", "shadow_of")
