"""Set up and serve the test identity provider: ``python -m tests.oidc_provider.serve SPEC``.

SPEC (JSON): ``port``, ``client_id``, ``client_secret``, ``redirect_uri`` (Steward's callback),
``users`` (``[{"username", "password", "email", "groups": [...]}]``). Makes the signing key, the
database, the users and the confidential client, then serves on 127.0.0.1:``port`` until killed.
"""

import json
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def main() -> None:
    spec = json.loads(sys.argv[1])
    state = Path(os.environ["OIDC_PROVIDER_STATE"])
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (state / "signing-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0)
    for person in spec["users"]:
        user = User.objects.create_user(person["username"], person["email"], person["password"])
        for name in person["groups"]:
            user.groups.add(Group.objects.get_or_create(name=name)[0])
    Application.objects.create(
        name="Steward",
        client_id=spec["client_id"],
        client_secret=spec["client_secret"],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=spec["redirect_uri"],
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )
    call_command("runserver", f"127.0.0.1:{spec['port']}", use_reloader=False, use_threading=True)


if __name__ == "__main__":
    main()
