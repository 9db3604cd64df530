"""Only events Steward wrote get leaves (issue 3).

* ``AuditPersonalData.tag``: an HMAC of the hash of the leaf the event will get (its id, fields
  and salted personal commitment) under a key derived from the signing key
  (``audit_tree.event_tag``); salts become unique.
* ``AuditRejection``: events the sequencer refused for a missing or wrong tag; append-only on
  PostgreSQL like the other audit tables.
* Events not sequenced yet are tagged now, with the server's key, so none of them is refused.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def tag_unsequenced_events(apps, schema_editor):
    from governance.audit.keys import tag_stored_event

    personal_data_model = apps.get_model("governance", "AuditPersonalData")
    pending = personal_data_model.objects.filter(event__leaf__isnull=True).values_list("event_id", "salt")
    for event_id, salt in list(pending):
        tag_stored_event(event_id, salt)


def create_rejection_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = "governance_auditrejection"
    schema_editor.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION steward_audit_append_only()"
    )
    schema_editor.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION steward_audit_append_only()"
    )


def drop_rejection_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = "governance_auditrejection"
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0003_audit_append_only_triggers"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditRejection",
            fields=[
                (
                    "event",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        primary_key=True,
                        related_name="rejection",
                        serialize=False,
                        to="governance.auditevent",
                    ),
                ),
                ("reason", models.CharField(max_length=200)),
                ("rejected_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.AddField(
            model_name="auditpersonaldata",
            name="tag",
            field=models.CharField(blank=True, help_text="Hex HMAC-SHA256; see audit_tree.event_tag.", max_length=64),
        ),
        migrations.AlterField(
            model_name="auditpersonaldata",
            name="salt",
            field=models.CharField(help_text="Hex, 32 random bytes.", max_length=64, unique=True),
        ),
        migrations.RunPython(tag_unsequenced_events, migrations.RunPython.noop),
        migrations.RunPython(create_rejection_triggers, drop_rejection_triggers),
    ]
