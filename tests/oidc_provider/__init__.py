"""A real OpenID Connect provider for the single sign-on tests: django-oauth-toolkit's, served by
a second Django process (``python -m tests.oidc_provider.serve``). Not part of Steward."""
