"""Check constraints for what one monitoring row must satisfy by itself (issue 8), the same rules
as the models' clean(): monitor bounds (MONITOR_BOUNDS), drift_share in (0, 1], progress and
drifted_fraction in [0, 1], a check finishes after it starts, escalation delays and repeats in
range, channel kinds matching their address, acknowledged/resolved alerts carrying their times.
Every rule is one the actions already enforced, so rows they wrote satisfy it.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('monitoring', '0004_retrain_job_foreign_keys'),
    ]

    operations = [
        migrations.AddConstraint(
            model_name='alert',
            constraint=models.CheckConstraint(condition=models.Q(('occurrences__gte', 1)), name='alert_occurs_at_least_once'),
        ),
        migrations.AddConstraint(
            model_name='alert',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('state', 'acknowledged'), _negated=True), ('acknowledged_at__isnull', False), _connector='OR'), name='alert_acknowledged_has_acknowledged_at'),
        ),
        migrations.AddConstraint(
            model_name='alert',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('state', 'resolved'), _negated=True), models.Q(('next_escalation_at__isnull', True), ('resolved_at__isnull', False), ('snoozed_until__isnull', True)), _connector='OR'), name='alert_resolved_is_settled'),
        ),
        migrations.AddConstraint(
            model_name='alert',
            constraint=models.CheckConstraint(condition=models.Q(('state__in', ['open', 'acknowledged', 'resolved'])), name='alert_state_valid'),
        ),
        migrations.AddConstraint(
            model_name='alert',
            constraint=models.CheckConstraint(condition=models.Q(('severity__in', ['warning', 'critical'])), name='alert_severity_valid'),
        ),
        migrations.AddConstraint(
            model_name='channel',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('kind', 'email'), ('url', '')), models.Q(('email_address', ''), ('kind__in', ['webhook', 'slack']), models.Q(('url__startswith', 'https://'), ('url__startswith', 'http://'), _connector='OR')), _connector='OR'), name='channel_kind_matches_address'),
        ),
        migrations.AddConstraint(
            model_name='driftcheck',
            constraint=models.CheckConstraint(condition=models.Q(('drift_share__gt', 0), ('drift_share__lte', 1)), name='drift_check_drift_share_in_range'),
        ),
        migrations.AddConstraint(
            model_name='driftcheck',
            constraint=models.CheckConstraint(condition=models.Q(('progress__gte', 0), ('progress__lte', 1)), name='drift_check_progress_in_range'),
        ),
        migrations.AddConstraint(
            model_name='driftcheck',
            constraint=models.CheckConstraint(condition=models.Q(('drifted_fraction__isnull', True), models.Q(('drifted_fraction__gte', 0), ('drifted_fraction__lte', 1)), _connector='OR'), name='drift_check_drifted_fraction_in_range'),
        ),
        migrations.AddConstraint(
            model_name='driftcheck',
            constraint=models.CheckConstraint(condition=models.Q(('started_at__isnull', True), ('finished_at__isnull', True), ('finished_at__gte', models.F('started_at')), _connector='OR'), name='drift_check_finishes_after_it_starts'),
        ),
        migrations.AddConstraint(
            model_name='driftcheck',
            constraint=models.CheckConstraint(condition=models.Q(('state__in', ['queued', 'running']), ('finished_at__isnull', False), _connector='OR'), name='drift_check_finished_has_finished_at'),
        ),
        migrations.AddConstraint(
            model_name='driftcheck',
            constraint=models.CheckConstraint(condition=models.Q(('state__in', ['queued', 'running', 'succeeded', 'failed'])), name='drift_check_state_valid'),
        ),
        migrations.AddConstraint(
            model_name='escalationlevel',
            constraint=models.CheckConstraint(condition=models.Q(('delay_minutes__gte', 1), ('delay_minutes__lte', 43200)), name='escalation_level_delay_in_range'),
        ),
        migrations.AddConstraint(
            model_name='escalationlevel',
            constraint=models.CheckConstraint(condition=models.Q(('repeat__lte', 100)), name='escalation_level_repeat_in_range'),
        ),
        migrations.AddConstraint(
            model_name='escalationlevel',
            constraint=models.CheckConstraint(condition=models.Q(('role', ''), ('role__in', ['model_owner', 'data_scientist', 'approver', 'viewer']), _connector='OR'), name='escalation_level_role_valid'),
        ),
        migrations.AddConstraint(
            model_name='monitor',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('window_versions__gte', 1), ('window_versions__lte', 1000)), ('window_versions__isnull', True), _connector='OR'), name='monitor_window_versions_in_range'),
        ),
        migrations.AddConstraint(
            model_name='monitor',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('schedule_minutes__gte', 1), ('schedule_minutes__lte', 527040)), ('schedule_minutes__isnull', True), _connector='OR'), name='monitor_schedule_minutes_in_range'),
        ),
        migrations.AddConstraint(
            model_name='monitor',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('reopen_within_hours__gte', 0), ('reopen_within_hours__lte', 8784)), ('reopen_within_hours__isnull', True), _connector='OR'), name='monitor_reopen_within_hours_in_range'),
        ),
        migrations.AddConstraint(
            model_name='monitor',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('auto_resolve_after__gte', 0), ('auto_resolve_after__lte', 10000)), ('auto_resolve_after__isnull', True), _connector='OR'), name='monitor_auto_resolve_after_in_range'),
        ),
        migrations.AddConstraint(
            model_name='monitor',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('min_sample_size__gte', 1), ('min_sample_size__lte', 1000000000)), ('min_sample_size__isnull', True), _connector='OR'), name='monitor_min_sample_size_in_range'),
        ),
        migrations.AddConstraint(
            model_name='monitor',
            constraint=models.CheckConstraint(condition=models.Q(('drift_share__gt', 0), ('drift_share__lte', 1)), name='monitor_drift_share_in_range'),
        ),
        migrations.AddConstraint(
            model_name='monitor',
            constraint=models.CheckConstraint(condition=models.Q(('performance_tolerance__gte', 0), ('performance_tolerance__lt', 1)), name='monitor_performance_tolerance_in_range'),
        ),
        migrations.AddConstraint(
            model_name='monitor',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('current_dataset__isnull', False), ('source', 'dataset')), models.Q(('current_dataset__isnull', True), ('source', 'predictions')), _connector='OR'), name='monitor_source_matches_current_dataset'),
        ),
        migrations.AddConstraint(
            model_name='monitor',
            constraint=models.CheckConstraint(condition=models.Q(('severity__in', ['warning', 'critical'])), name='monitor_severity_valid'),
        ),
    ]
