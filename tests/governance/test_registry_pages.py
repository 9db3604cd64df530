"""The model page (issues 9, 14): archive and delete buttons, and which version holds each alias."""

from django.urls import reverse

from governance.actions.aliases import do_set_alias
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


def test_the_model_page_says_which_version_holds_each_alias_and_who_moved_it(
    client, scientist, viewer, registered_model, registered_version
):
    page = reverse("model_detail", args=[registered_model.pk])
    client.force_login(viewer)
    assert "No aliases" in client.get(page).content.decode()

    do_set_alias(model=registered_model, alias="staging", version=registered_version, actor=scientist)
    shown = client.get(page).content.decode()

    move = AuditEvent.objects.get(action="model_alias.move")
    assert "<code>staging</code>" in shown
    assert f'<a href="{registered_version.get_absolute_url()}">v{registered_version.version}</a>' in shown
    assert f'href="{move.get_absolute_url()}"' in shown
    assert f"<td>{scientist.get_username()}</td>" in shown


def test_the_model_pages_history_link_lists_the_models_own_events(client, viewer, registered_model):
    client.force_login(viewer)
    shown = client.get(reverse("model_detail", args=[registered_model.pk])).content.decode()
    history = f"/audit/?object_type=registeredmodel&amp;object_id={registered_model.pk}"
    assert f'href="{history}"' in shown
    trail = client.get(history.replace("&amp;", "&")).content.decode()
    created = AuditEvent.objects.get(action="registered_model.create", object_id=str(registered_model.pk))
    assert f'href="{created.get_absolute_url()}"' in trail
