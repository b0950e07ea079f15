import re

from django import forms
from django.core.validators import validate_email

from .models import AlertRule
from .serializers import MAX_EMAILS
from .webhooks import validate_webhook_url


class AlertRuleForm(forms.ModelForm):
    emails = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}),
        help_text="E-mailed when an alert opens. Separate addresses with commas or new lines.",
    )
    webhook_url = forms.URLField(
        required=False, max_length=500, assume_scheme="https", label="Webhook URL",
        help_text="Optional: receives a signed JSON POST when an alert opens, is acknowledged or resolved.",
    )

    class Meta:
        model = AlertRule
        fields = ["name", "threshold_pct", "window_minutes", "min_detections", "enabled", "emails", "webhook_url",
                  "cooldown_minutes"]
        labels = {"threshold_pct": "Negative share above (%)", "window_minutes": "Window (minutes)",
                  "min_detections": "At least this many detections", "cooldown_minutes": "Cooldown (minutes)"}

    def __init__(self, *args, site, **kwargs):
        self.site = site
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["emails"] = "\n".join(self.instance.emails)

    def clean_emails(self):
        addresses = [a.strip().lower() for a in re.split(r"[\s,;]+", self.cleaned_data["emails"]) if a.strip()]
        for address in addresses:
            validate_email(address)
        if len(addresses) > MAX_EMAILS:
            raise forms.ValidationError(f"At most {MAX_EMAILS} addresses.")
        return list(dict.fromkeys(addresses))

    def clean_webhook_url(self):
        return validate_webhook_url(self.cleaned_data["webhook_url"])

    def clean_name(self):
        name = self.cleaned_data["name"]
        clash = AlertRule.objects.filter(site=self.site, name=name).exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("This site already has a rule with that name.")
        return name


class AlertNoteForm(forms.Form):
    note = forms.CharField(required=False, max_length=2000)
