"""A user's own account: their password (issue 14), and the page a reset link opens.

Thin: the rules (validators, single sign-on logins, the audit event) are in
``governance.actions.passwords``; keeping the session alive after one's own change is the view's.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.urls import reverse_lazy

from governance.actions.passwords import do_change_own_password, do_reset_password
from governance.forms import OwnPasswordForm
from governance.views.helpers import form_view


@login_required
def password_change(request: HttpRequest) -> HttpResponse:
    """GET: the form; POST: change one's own password (the current one proves it is you)."""

    def change(data: dict) -> object:
        user = do_change_own_password(
            user=request.user, old_password=data["old_password"], new_password=data["new_password"]
        )
        update_session_auth_hash(request, user)  # this session stays; the user's others end
        return user

    return form_view(
        request,
        OwnPasswordForm(request.POST or None),
        change,
        success=lambda user: "dashboard",
        success_message=lambda user: "Your password is changed; your other sessions are logged out.",
        template="generic/form.html",
        context=lambda: {
            "title": "Change your password",
            "submit_label": "Change password",
            "section": "account",
        },
    )


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's reset-link page (token check, one use), setting the password through the action."""

    template_name = "registration/password_reset_confirm.html"
    success_url = reverse_lazy("login")

    def form_valid(self, form):
        try:
            do_reset_password(user=self.user, password=form.cleaned_data["new_password1"])
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
            return self.form_invalid(form)
        del self.request.session[auth_views.INTERNAL_RESET_SESSION_TOKEN]
        messages.success(self.request, "Your password is set; log in with it.")
        return super(auth_views.PasswordResetConfirmView, self).form_valid(form)
