"""The provider's claims: the user's name, email and Django groups (as an IdP sends groups),
changed per user by ``$OIDC_PROVIDER_STATE/overrides.json`` when a test writes one, read at each
request: ``{username: {"claims": {...}, "drop": [...], "userinfo": <any JSON>, "id_token": {...},
"id_token_time": {claim: seconds from now}}}``. Everything is still issued and signed by
django-oauth-toolkit: a hostile or broken provider, not a mock of one."""

import json
import os
import time
from pathlib import Path

from oauth2_provider.oauth2_validators import OAuth2Validator


def _overrides(username: str) -> dict:
    path = Path(os.environ["OIDC_PROVIDER_STATE"]) / "overrides.json"
    return json.loads(path.read_text()).get(username, {}) if path.exists() else {}


class GroupsValidator(OAuth2Validator):
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "groups": "groups"}

    def get_additional_claims(self, request):
        user = request.user
        claims = {
            "preferred_username": user.username,
            "email": user.email,
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }
        override = _overrides(user.username)
        claims.update(override.get("claims", {}))
        for name in override.get("drop", []):
            claims.pop(name, None)
        return claims

    def get_userinfo_claims(self, request):
        override = _overrides(request.user.username)
        if "userinfo" in override:
            return override["userinfo"]
        return super().get_userinfo_claims(request)

    def get_id_token_dictionary(self, token, token_handler, request):
        claims, expiration = super().get_id_token_dictionary(token, token_handler, request)
        override = _overrides(request.user.username)
        claims.update(override.get("id_token", {}))
        now = int(time.time())
        claims.update({name: now + delta for name, delta in override.get("id_token_time", {}).items()})
        return claims, expiration
