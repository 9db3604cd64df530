"""The model page's archive and delete buttons (issue 9), through the UI."""

from django.urls import reverse

from governance.models import AuditEvent, ModelVersion, RegisteredModel
from tests.governance.test_registry_lifecycle import upload_version


def test_archive_then_unarchive_then_delete_from_the_model_page(
    client, client_for, scientist, registered_model
):
    upload_version(client_for(scientist), registered_model)
    client.force_login(scientist)
    page = reverse("model_detail", args=[registered_model.pk])

    shown = client.get(page).content.decode()
    archived = client.post(reverse("model_archive", args=[registered_model.pk]))
    archived_page = client.get(page).content.decode()
    unarchived = client.post(reverse("model_archive", args=[registered_model.pk]))
    deleted = client.post(reverse("model_delete", args=[registered_model.pk]))

    assert "Unknown" in shown
    assert archived.status_code == 302
    assert "Unarchive" in archived_page
    assert unarchived.status_code == 302
    assert deleted.url == reverse("model_list")
    assert client.get(page).status_code == 404
    assert ModelVersion.objects.get().status == "deleted"
    assert RegisteredModel.objects.get().deleted_at is not None
    assert list(
        AuditEvent.objects.filter(action__startswith="registered_model.").values_list("action", flat=True)
    ) == [
        "registered_model.delete",
        "registered_model.unarchive",
        "registered_model.archive",
        "registered_model.create",
    ]


def test_a_viewer_sees_no_buttons_and_is_refused(client, viewer, registered_model):
    client.force_login(viewer)

    page = client.get(reverse("model_detail", args=[registered_model.pk])).content.decode()
    client.post(reverse("model_delete", args=[registered_model.pk]))

    assert reverse("model_delete", args=[registered_model.pk]) not in page
    assert RegisteredModel.objects.get().deleted_at is None
