"""What a single row must satisfy, enforced by the database (migration governance/0005) and by
``full_clean()``, so a write that skips the actions still cannot store it (issue 8)."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.actions.promotions import do_request_promotion
from governance.actions.tokens import do_create_api_token
from governance.models import ApiToken, DatasetVersion, Membership, ModelVersion, PromotionRequest


def _refused(write) -> bool:
    try:
        with transaction.atomic():
            write()
    except IntegrityError:
        return True
    return False


def test_version_numbers_start_at_1_and_hashes_are_sha256_hex(dataset_version, model_version):
    assert _refused(lambda: DatasetVersion.objects.filter(pk=dataset_version.pk).update(version=0))
    assert _refused(lambda: ModelVersion.objects.filter(pk=model_version.pk).update(version=0))
    assert _refused(lambda: DatasetVersion.objects.filter(pk=dataset_version.pk).update(sha256="ab" * 31))
    assert _refused(lambda: ModelVersion.objects.filter(pk=model_version.pk).update(sha256="G" * 64))
    dataset_version.refresh_from_db()
    assert dataset_version.version == 1
    dataset_version.version = 0
    with pytest.raises(ValidationError) as refused:
        dataset_version.full_clean()
    assert refused.value.messages == ["version numbers start at 1"]


def test_roles_are_known_roles(scientist):
    membership = Membership.objects.get(user=scientist)

    assert _refused(lambda: Membership.objects.filter(pk=membership.pk).update(role="admin"))
    membership.refresh_from_db()
    assert membership.role == "data_scientist"


def test_a_promotion_is_decided_by_someone_other_than_its_requester(model_version, scientist):
    request = do_request_promotion(model_version=model_version, actor=scientist)
    now = timezone.now()
    pending = PromotionRequest.objects.filter(pk=request.pk)

    assert _refused(lambda: pending.update(state="approved", decided_by=scientist, decided_at=now))
    assert _refused(lambda: pending.update(state="rejected"))
    assert _refused(lambda: pending.update(decided_by=scientist, decided_at=now))
    assert not _refused(lambda: pending.update(state="cancelled", decided_by=scientist, decided_at=now))
    request.refresh_from_db()
    assert (request.state, request.decided_by) == ("cancelled", scientist)


def test_a_token_expires_and_is_revoked_after_its_creation(scientist):
    token, _ = do_create_api_token(user=scientist, name="t", actor=scientist)
    before = token.created_at - datetime.timedelta(seconds=1)

    assert _refused(lambda: ApiToken.objects.filter(pk=token.pk).update(revoked_at=before))
    assert _refused(lambda: ApiToken.objects.filter(pk=token.pk).update(key_hash="not a hash"))
    token.expires_at = before
    with pytest.raises(ValidationError) as refused:
        token.full_clean()
    assert refused.value.message_dict == {"expires_at": ["the expiry must be after the token's creation"]}
