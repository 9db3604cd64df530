"""Channel pages: the teams' channels (create), a channel's health and deliveries (edit), and the
confirmed enable, disable and rotate-secret buttons."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from governance.forms import style_filters
from governance.views.helpers import call_action, paginate, perform, visible_or_404
from monitoring.actions.channels import do_create_channel, do_rotate_channel_secret, do_update_channel
from monitoring.filtersets import ChannelFilterSet
from monitoring.forms import ChannelEditForm, ChannelForm
from monitoring.models import Channel, Notification
from monitoring.permissions import may_create_routing, may_manage_channel


@login_required
def channel_list(request: HttpRequest) -> HttpResponse:
    """The teams' delivery channels, disabled ones first (they need someone); POST creates one."""
    user = request.user
    form = ChannelForm(request.POST or None, user=user)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        channel, status = call_action(
            form,
            lambda: do_create_channel(
                team=data["team"],
                name=data["name"],
                kind=data["kind"],
                owner=data["owner"],
                email_address=data["email_address"],
                url=data["url"],
                actor=user,
            ),
        )
        if channel is not None:
            if channel.secret:  # shown once, on the channel's page
                request.session[f"channel-secret-{channel.pk}"] = channel.secret
            messages.success(request, f"Created channel {channel.name}.")
            return redirect(channel)
    elif request.method == "POST":
        status = 400
    queryset = (
        Channel.objects.restrict(user)
        .select_related("team", "owner")
        .order_by("is_active", "team__name", "name")
    )
    filterset = ChannelFilterSet(request.GET or None, queryset=queryset, request=request)
    style_filters(filterset.form)
    context = {
        "section": "channels",
        "filterset": filterset,
        "page_obj": paginate(request, filterset.qs),
        "form": form,
        "may_create": may_create_routing(user),
    }
    return render(request, "monitoring/channel_list.html", context, status=status)


@login_required
def channel_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A channel: its health (last error, disabled reason), recent deliveries; POST edits it."""
    user = request.user
    channel = visible_or_404(request, Channel.objects.select_related("team", "owner"), pk)
    form = ChannelEditForm(
        request.POST or None,
        initial={
            "name": channel.name,
            "owner": channel.owner_id,
            "email_address": channel.email_address,
            "url": channel.url,
        },
        user=user,
    )
    status = 200
    if request.method == "POST" and form.is_valid():
        changed, status = call_action(
            form, lambda: do_update_channel(channel=channel, actor=user, **form.cleaned_data)
        )
        if changed is not None:
            messages.success(request, f"Saved channel {changed.name}.")
            return redirect(changed)
    elif request.method == "POST":
        status = 400
    context = {
        "section": "channels",
        "channel": channel,
        "form": form,
        "may_manage": may_manage_channel(user, channel),
        "notifications": Notification.objects.restrict(user)
        .filter(channel=channel)
        .select_related("alert")[:20],
        "levels": channel.levels.select_related("policy"),
        "secret": request.session.pop(f"channel-secret-{channel.pk}", None),
    }
    return render(request, "monitoring/channel_detail.html", context, status=status)


def _channel_action(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    channel = visible_or_404(request, Channel.objects.all(), pk)
    if request.method != "POST":
        context = {
            "section": "channels",
            "object": channel,
            "question": f"{verb.capitalize()} channel {channel.name}?",
            "explanation": "The old secret stops verifying at once." if verb == "rotate" else "",
            "confirm_label": verb.capitalize(),
            "cancel_url": channel.get_absolute_url(),
        }
        return render(request, "generic/confirm.html", context)
    if verb == "rotate":

        def act():
            rotated = do_rotate_channel_secret(channel=channel, actor=request.user)
            request.session[f"channel-secret-{channel.pk}"] = rotated.secret

        perform(request, act, "New secret made; it is shown once, below.")
    else:
        perform(
            request,
            lambda: do_update_channel(channel=channel, actor=request.user, is_active=verb == "enable"),
            f"Channel {channel.name} {verb}d.",
        )
    return redirect(channel)


@login_required
def channel_enable(request: HttpRequest, pk: int) -> HttpResponse:
    return _channel_action(request, pk, "enable")


@login_required
def channel_disable(request: HttpRequest, pk: int) -> HttpResponse:
    return _channel_action(request, pk, "disable")


@login_required
def channel_rotate_secret(request: HttpRequest, pk: int) -> HttpResponse:
    return _channel_action(request, pk, "rotate")
