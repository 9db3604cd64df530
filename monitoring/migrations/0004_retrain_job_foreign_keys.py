"""Alert.retrain_job_id and DriftCheck.retrain_job_id become foreign keys to runners.Job (issue 8).

The column keeps its name and values (``retrain_job_id`` is the new field's column): renamed to
``retrain_job`` in the model state, then altered into a nullable key with a database constraint,
SET_NULL when the job is deleted. 0003 nulled ids of jobs that no longer exist.
"""

import django.db.models.deletion
from django.db import migrations, models


def _foreign_key():
    return models.ForeignKey(
        blank=True,
        null=True,
        on_delete=django.db.models.deletion.SET_NULL,
        related_name="+",
        to="runners.job",
    )


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0003_null_dangling_retrain_job_ids"),
        ("runners", "0001_initial"),
    ]

    operations = [
        migrations.RenameField(model_name="alert", old_name="retrain_job_id", new_name="retrain_job"),
        migrations.AlterField(model_name="alert", name="retrain_job", field=_foreign_key()),
        migrations.RenameField(model_name="driftcheck", old_name="retrain_job_id", new_name="retrain_job"),
        migrations.AlterField(model_name="driftcheck", name="retrain_job", field=_foreign_key()),
    ]
