"""Before retrain_job_id becomes a foreign key (0004): ids of jobs that no longer exist become NULL.

A separate migration, so the UPDATE commits before 0004 alters the tables (PostgreSQL refuses to
ALTER a table with pending trigger events in the same transaction).
"""

from django.db import migrations


def null_dangling(apps, schema_editor):
    jobs = apps.get_model("runners", "Job").objects.values("pk")
    for name in ("Alert", "DriftCheck"):
        model = apps.get_model("monitoring", name)
        model.objects.filter(retrain_job_id__isnull=False).exclude(retrain_job_id__in=jobs).update(
            retrain_job_id=None
        )


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0002_monitors_escalation_channels"),
        ("runners", "0001_initial"),
    ]

    # The dropped ids named no job; there is nothing to put back.
    operations = [migrations.RunPython(null_dangling, migrations.RunPython.noop)]
