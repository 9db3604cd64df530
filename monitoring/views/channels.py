"""Channel pages: the teams' channels (create), a channel's health and deliveries (edit), and the
confirmed enable, disable and rotate-secret buttons."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse

from governance.views.helpers import button_view, filtered_list, form_view, visible_or_404
from monitoring.actions.channels import do_create_channel, do_rotate_channel_secret, do_update_channel
from monitoring.filtersets import ChannelFilterSet
from monitoring.forms import ChannelEditForm, ChannelForm
from monitoring.models import Channel, Notification
from monitoring.permissions import may_create_routing, may_manage_channel


def _remember_secret(request: HttpRequest, channel: Channel) -> Channel:
    """Keep a new secret for the channel's page, which shows it once."""
    if channel.secret:
        request.session[f"channel-secret-{channel.pk}"] = channel.secret
    return channel


@login_required
def channel_list(request: HttpRequest) -> HttpResponse:
    """The teams' delivery channels, disabled ones first (they need someone); POST creates one."""
    user = request.user

    def page() -> dict[str, Any]:
        queryset = (
            Channel.objects.restrict(user)
            .select_related("team", "owner")
            .order_by("is_active", "team__name", "name")
        )
        return {
            "section": "channels",
            **filtered_list(request, ChannelFilterSet, queryset),
            "may_create": may_create_routing(user),
        }

    return form_view(
        request,
        ChannelForm(request.POST or None, user=user),
        lambda data: do_create_channel(
            team=data["team"],
            name=data["name"],
            kind=data["kind"],
            owner=data["owner"],
            email_address=data["email_address"],
            url=data["url"],
            actor=user,
        ),
        success=lambda channel: _remember_secret(request, channel),
        success_message=lambda channel: f"Created channel {channel.name}.",
        template="monitoring/channel_list.html",
        context=page,
    )


@login_required
def channel_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A channel: its health (last error, disabled reason), recent deliveries; POST edits it."""
    user = request.user
    channel = visible_or_404(request, Channel.objects.select_related("team", "owner"), pk)
    initial = {
        "name": channel.name,
        "owner": channel.owner_id,
        "email_address": channel.email_address,
        "url": channel.url,
    }

    def page() -> dict[str, Any]:
        return {
            "section": "channels",
            "channel": channel,
            "may_manage": may_manage_channel(user, channel),
            "notifications": Notification.objects.restrict(user)
            .filter(channel=channel)
            .select_related("alert")[:20],
            "levels": channel.levels.select_related("policy"),
            "secret": request.session.pop(f"channel-secret-{channel.pk}", None),
        }

    return form_view(
        request,
        ChannelEditForm(request.POST or None, initial=initial, user=user),
        lambda data: do_update_channel(channel=channel, actor=user, **data),
        success_message=lambda changed: f"Saved channel {changed.name}.",
        template="monitoring/channel_detail.html",
        context=page,
    )


def _channel_button(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    channel = visible_or_404(request, Channel.objects.all(), pk)

    def rotate() -> Channel:
        return _remember_secret(request, do_rotate_channel_secret(channel=channel, actor=request.user))

    def switch() -> Channel:
        return do_update_channel(channel=channel, actor=request.user, is_active=verb == "enable")

    rotating = verb == "rotate"
    return button_view(
        request,
        rotate if rotating else switch,
        section="channels",
        question=f"{verb.capitalize()} channel {channel.name}?",
        explanation="The old secret stops verifying at once." if rotating else "",
        label=verb.capitalize(),
        back=channel.get_absolute_url(),
        success_message="New secret made; it is shown once, below."
        if rotating
        else f"Channel {channel.name} {verb}d.",
    )


@login_required
def channel_enable(request: HttpRequest, pk: int) -> HttpResponse:
    return _channel_button(request, pk, "enable")


@login_required
def channel_disable(request: HttpRequest, pk: int) -> HttpResponse:
    return _channel_button(request, pk, "disable")


@login_required
def channel_rotate_secret(request: HttpRequest, pk: int) -> HttpResponse:
    return _channel_button(request, pk, "rotate")
