"""Initial schema: cases, queue, decision records, messages, tokens and the append-only audit tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

LIVE = sa.text("status <> 'closed'")
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
AUDIT_TABLES = ('audit_entries', 'audit_checkpoints')

# Append-only audit tables: UPDATE, DELETE and TRUNCATE are refused by the database itself.
PG_APPEND_ONLY = """
CREATE FUNCTION lifeguard_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;
"""


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_sha256', name=op.f('uq_api_tokens_token_sha256'))
    )
    op.create_table('case_updates',
    sa.Column('conversation_id', sa.String(length=200), nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('case_id', sa.String(length=40), nullable=True),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('conversation_id', 'event_id', name=op.f('pk_case_updates'))
    )
    op.create_table('cases',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('conversation_id', sa.String(length=200), nullable=False),
    sa.Column('opened_by_event_id', sa.String(length=128), nullable=False),
    sa.Column('opened_at', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sla_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('risk', sa.Float(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('priority_score', sa.Float(), nullable=False),
    sa.Column('stages', sa.JSON(), nullable=False),
    sa.Column('stage_marks', sa.JSON(), nullable=False),
    sa.Column('youngest_band', sa.String(length=16), nullable=False),
    sa.Column('band_rank', sa.Integer(), nullable=False),
    sa.Column('escalated', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('claimed_by', sa.String(length=128), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_review_due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decision_due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_risk', sa.Float(), nullable=True),
    sa.Column('decided_stages', sa.JSON(), nullable=True),
    sa.Column('reopen_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases'))
    )
    op.create_index(op.f('ix_cases_conversation_id'), 'cases', ['conversation_id'], unique=False)
    op.create_index('ix_cases_queue', 'cases',
                    ['status', 'escalated', 'priority', 'risk', 'band_rank', 'queued_at'], unique=False)
    op.create_index('uq_cases_one_live_per_conversation', 'cases', ['conversation_id'], unique=True,
                    postgresql_where=LIVE, sqlite_where=LIVE)
    op.create_table('decision_records',
    sa.Column('conversation_id', sa.String(length=200), nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('record', sa.Text(), nullable=False),
    sa.Column('audit_seq', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('conversation_id', 'event_id', name=op.f('pk_decision_records'))
    )
    op.create_index('ix_decision_records_conv_ts', 'decision_records', ['conversation_id', 'ts'], unique=False)
    op.create_table('messages',
    sa.Column('conversation_id', sa.String(length=200), nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_type', sa.String(length=32), nullable=False),
    sa.Column('sender_id', sa.String(length=128), nullable=False),
    sa.Column('sender_band', sa.String(length=16), nullable=False),
    sa.Column('target_id', sa.String(length=128), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('text_sha256', sa.String(length=64), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=32), nullable=True),
    sa.Column('purged_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('conversation_id', 'event_id', name=op.f('pk_messages'))
    )
    op.create_index('ix_messages_conv_ts', 'messages', ['conversation_id', 'ts'], unique=False)
    op.create_table('case_actions',
    sa.Column('id', BIGINT_ID, autoincrement=True, nullable=False),
    sa.Column('case_id', sa.String(length=40), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('reason_code', sa.String(length=16), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('waited_seconds', sa.Float(), nullable=True),
    sa.Column('audit_seq', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_actions_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_actions'))
    )
    op.create_index(op.f('ix_case_actions_case_id'), 'case_actions', ['case_id'], unique=False)
    op.create_table('case_reasons',
    sa.Column('id', BIGINT_ID, autoincrement=True, nullable=False),
    sa.Column('case_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('reason_id', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_reasons_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_reasons')),
    sa.UniqueConstraint('case_id', 'kind', 'reason_id', 'event_id', name='uq_case_reasons_key')
    )
    op.create_index(op.f('ix_case_reasons_case_id'), 'case_reasons', ['case_id'], unique=False)
    op.create_table('case_subjects',
    sa.Column('id', BIGINT_ID, autoincrement=True, nullable=False),
    sa.Column('case_id', sa.String(length=40), nullable=False),
    sa.Column('subject', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_subjects_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_subjects')),
    sa.UniqueConstraint('case_id', 'subject', name='uq_case_subjects_key')
    )
    op.create_index(op.f('ix_case_subjects_case_id'), 'case_subjects', ['case_id'], unique=False)
    op.create_index(op.f('ix_case_subjects_subject'), 'case_subjects', ['subject'], unique=False)
    op.create_table('audit_checkpoints',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('head', sa.String(length=64), nullable=False),
    sa.Column('time', sa.String(length=40), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('signature', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_checkpoints'))
    )
    op.create_table('audit_entries',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('entry', sa.Text(), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_entries')),
    sa.UniqueConstraint('entry_hash', name=op.f('uq_audit_entries_entry_hash'))
    )
    op.create_index(op.f('ix_audit_entries_action'), 'audit_entries', ['action'], unique=False)
    op.create_index(op.f('ix_audit_entries_subject'), 'audit_entries', ['subject'], unique=False)
    _append_only_triggers()


def _append_only_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        op.execute(PG_APPEND_ONLY)
        for table in AUDIT_TABLES:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION lifeguard_audit_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION lifeguard_audit_append_only()")
    elif dialect == 'sqlite':
        for table in AUDIT_TABLES:
            for op_name in ('UPDATE', 'DELETE'):
                op.execute(f"CREATE TRIGGER {table}_no_{op_name.lower()} BEFORE {op_name} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, 'audit table {table} is append-only: {op_name} refused'); "
                           "END")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in AUDIT_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS lifeguard_audit_append_only()")
    op.drop_index(op.f('ix_audit_entries_subject'), table_name='audit_entries')
    op.drop_index(op.f('ix_audit_entries_action'), table_name='audit_entries')
    op.drop_table('audit_entries')
    op.drop_table('audit_checkpoints')
    op.drop_index(op.f('ix_case_subjects_subject'), table_name='case_subjects')
    op.drop_index(op.f('ix_case_subjects_case_id'), table_name='case_subjects')
    op.drop_table('case_subjects')
    op.drop_index(op.f('ix_case_reasons_case_id'), table_name='case_reasons')
    op.drop_table('case_reasons')
    op.drop_index(op.f('ix_case_actions_case_id'), table_name='case_actions')
    op.drop_table('case_actions')
    op.drop_index('ix_messages_conv_ts', table_name='messages')
    op.drop_table('messages')
    op.drop_index('ix_decision_records_conv_ts', table_name='decision_records')
    op.drop_table('decision_records')
    op.drop_index('uq_cases_one_live_per_conversation', table_name='cases')
    op.drop_index('ix_cases_queue', table_name='cases')
    op.drop_index(op.f('ix_cases_conversation_id'), table_name='cases')
    op.drop_table('cases')
    op.drop_table('case_updates')
    op.drop_table('api_tokens')
