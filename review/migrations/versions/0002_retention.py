"""Retention: purge runs and tombstones (owned by compliance/, see compliance/tables.py).

Revision ID: 0002_retention
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002_retention'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('retention_runs',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('as_of', sa.String(length=40), nullable=False),
    sa.Column('record', sa.Text(), nullable=False),
    sa.Column('audit_seq', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name='pk_retention_runs')
    )
    op.create_table('retention_tombstones',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('case_id', sa.String(length=40), nullable=True),
    sa.Column('conversation_id', sa.String(length=200), nullable=False),
    sa.Column('ref', sa.String(length=128), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name='pk_retention_tombstones'),
    sa.UniqueConstraint('kind', 'conversation_id', 'ref', name='uq_retention_tombstones_item')
    )
    op.create_index('ix_retention_tombstones_run_id', 'retention_tombstones', ['run_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_retention_tombstones_run_id', table_name='retention_tombstones')
    op.drop_table('retention_tombstones')
    op.drop_table('retention_runs')
