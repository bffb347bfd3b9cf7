"""Predictions table: one row per predicted instance, with room for feedback.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Only rows with feedback enter the labelled indexes: free at insert time.
LABELLED = sa.text("actual IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("protocol", sa.String(), nullable=False),
        # json, not jsonb: jsonb rewrites numbers, json keeps floats exact.
        sa.Column("inputs", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("output", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("actual", sa.Float(), nullable=True),
        sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_index(
        "ix_predictions_model_version_created_at", "predictions", ["model_version", "created_at"]
    )
    op.create_index(
        "ix_predictions_labelled",
        "predictions",
        ["model_version", "created_at"],
        sqlite_where=LABELLED,
        postgresql_where=LABELLED,
    )
    op.create_index(
        "ix_predictions_labelled_created_at",
        "predictions",
        ["created_at"],
        sqlite_where=LABELLED,
        postgresql_where=LABELLED,
    )


def downgrade() -> None:
    op.drop_table("predictions")
