"""Audit tables become append-only in the database itself (issue 3).

* ``AuditLeaf.personal_commitment`` keeps each leaf's commitment to its personal details, so a
  leaf can still be recomputed after those details are erased.
* The actor / on-behalf-of foreign keys PROTECT: SET_NULL would rewrite events.
* Every existing event gets a salt (``AuditPersonalData``) so the sequencer can commit to it.
* On PostgreSQL, triggers refuse UPDATE and DELETE (per row) and TRUNCATE (per statement) on the
  events, leaves, tree nodes and checkpoints. Two transaction-local settings open a door:
  ``steward.audit_erasure = 'on'`` lets ``do_erase_personal_data`` UPDATE the personal columns
  of events (nothing else); ``steward.audit_maintenance = 'on'`` lets the test suite flush its
  database between transactional tests. Application code never sets the latter.
"""

import secrets

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

PROTECTED_TABLES = [
    "governance_auditevent",
    "governance_auditleaf",
    "governance_audittreenode",
    "governance_auditcheckpoint",
]

# Columns an erasure may rewrite; every other column of an event is hashed into its leaf.
CREATE_FUNCTION = """
CREATE OR REPLACE FUNCTION steward_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('steward.audit_maintenance', true) = 'on' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'governance_auditevent'
            AND current_setting('steward.audit_erasure', true) = 'on' THEN
        IF (NEW.id, NEW.timestamp, NEW.action, NEW.object_type, NEW.object_id, NEW.team_id,
            NEW.actor_id, NEW.on_behalf_of_id, NEW.request_id, NEW.task_id)
           IS DISTINCT FROM
           (OLD.id, OLD.timestamp, OLD.action, OLD.object_type, OLD.object_id, OLD.team_id,
            OLD.actor_id, OLD.on_behalf_of_id, OLD.request_id, OLD.task_id) THEN
            RAISE EXCEPTION 'an erasure may change only the personal columns of an audit event';
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING HINT = 'erase personal details with governance.audit_tree.do_erase_personal_data';
END;
$$;
"""


def _triggers(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION steward_audit_append_only()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION steward_audit_append_only()",
    ]


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # No parameters: the RAISE format strings use % placeholders of their own.
    schema_editor.execute(CREATE_FUNCTION, params=None)
    for table in PROTECTED_TABLES:
        for statement in _triggers(table):
            schema_editor.execute(statement)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in PROTECTED_TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS steward_audit_append_only()")


def salt_existing_events(apps, schema_editor):
    """Events written before salts existed get one now; none of them has a leaf yet."""
    event_model = apps.get_model("governance", "AuditEvent")
    personal_data_model = apps.get_model("governance", "AuditPersonalData")
    unsalted = event_model.objects.filter(personal_data__isnull=True).values_list("id", flat=True)
    batch = []
    for event_id in unsalted.iterator(chunk_size=2000):
        batch.append(personal_data_model(event_id=event_id, salt=secrets.token_bytes(32).hex()))
        if len(batch) == 2000:
            personal_data_model.objects.bulk_create(batch)
            batch = []
    personal_data_model.objects.bulk_create(batch)


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0002_audit_tree_tokens_promotions"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="auditleaf",
            name="personal_commitment",
            field=models.CharField(
                default="",
                help_text="The leaf's commitment to the personal details; outlives their erasure.",
                max_length=64,
            ),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="on_behalf_of",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(salt_existing_events, migrations.RunPython.noop),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
