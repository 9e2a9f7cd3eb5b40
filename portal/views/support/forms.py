"""Console forms: each action carries the reason it is recorded with."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from repayments.models import DisputeResolution

REASON_HELP = _("Recorded in the audit log with your name.")


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=1000, help_text=REASON_HELP, strip=True)


class NoteForm(forms.Form):
    body = forms.CharField(label=_("Internal note"), max_length=2000, widget=forms.Textarea)


class RefundRequestForm(ReasonForm):
    attempt = forms.IntegerField(min_value=1, widget=forms.HiddenInput)


class RefundDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", _("Approve")), ("reject", _("Reject"))])
    note = forms.CharField(label=_("Decision note"), max_length=1000)


class ReplyForm(forms.Form):
    body = forms.CharField(label=_("Message"), max_length=2000, widget=forms.Textarea)
    internal = forms.BooleanField(
        label=_("Internal note (staff only, not sent to the borrower)"), required=False
    )


class AssignForm(forms.Form):
    assignee = forms.IntegerField(required=False, min_value=1)


class ResolveForm(forms.Form):
    resolution = forms.ChoiceField(label=_("Outcome"), choices=DisputeResolution.choices)
    note = forms.CharField(
        label=_("Explanation for the borrower"), max_length=2000, widget=forms.Textarea
    )
