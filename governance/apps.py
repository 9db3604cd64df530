from django.apps import AppConfig
from django.core import checks


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        checks.register(check_oidc_role_map)


def check_oidc_role_map(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """``manage.py check`` and ``migrate`` (the deploy's migrations job) refuse a malformed
    ``STEWARD_OIDC_ROLE_MAP`` instead of letting each sign-on fail on it."""
    from governance.actions.sso import role_map  # models are loaded only once apps are ready

    try:
        role_map()
    except ValueError as exc:
        return [checks.Error(str(exc), id="steward.E001")]
    return []
