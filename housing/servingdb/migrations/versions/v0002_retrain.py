"""Retraining state: policy, decisions, lease.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "retrain_config",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("policy", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "retrain_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("go", sa.Boolean(), nullable=False),
        sa.Column("triggers", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("reasons", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("signals", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("policy", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("model_version", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_retrain_decisions_decided_at", "retrain_decisions", ["decided_at"])
    op.create_table(
        "retrain_lease",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("retrain_lease")
    op.drop_index("ix_retrain_decisions_decided_at", table_name="retrain_decisions")
    op.drop_table("retrain_decisions")
    op.drop_table("retrain_config")
