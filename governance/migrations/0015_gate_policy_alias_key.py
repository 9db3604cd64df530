"""Gate policies are keyed by the alias's name key (issue 15's hostile review): "Production" and
"production" are one protected alias, so a team has at most one policy for them."""

from django.db import migrations, models

from governance.names import name_key


def fill_alias_keys(apps, schema_editor):
    """Set each policy's key. Where look-alikes already share one, the policy the old lookup
    applied (the first by alias, the model's ordering) is kept and the shadowed ones, which
    never took effect, are removed; each removal is printed for the operator."""
    policies = apps.get_model("governance", "PromotionGatePolicy")
    seen: set[tuple[int, str]] = set()
    for policy in policies.objects.order_by("team_id", "alias", "id"):
        key = (policy.team_id, name_key(policy.alias))
        if key in seen:
            print(f"\n  removing gate policy #{policy.pk} ({policy.alias!r}): shadowed by a look-alike alias's policy")
            policy.delete()
            continue
        seen.add(key)
        policy.alias_key = key[1]
        policy.save(update_fields=["alias_key"])


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0014_promotion_evaluation_jobs"),
    ]

    operations = [
        migrations.AddField(
            model_name="promotiongatepolicy",
            name="alias_key",
            field=models.CharField(default="", max_length=255),
            preserve_default=False,
        ),
        migrations.RunPython(fill_alias_keys, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="promotiongatepolicy",
            name="one_gate_policy_per_alias",
        ),
        migrations.AddConstraint(
            model_name="promotiongatepolicy",
            constraint=models.UniqueConstraint(fields=("team", "alias_key"), name="one_gate_policy_per_alias_key"),
        ),
    ]
