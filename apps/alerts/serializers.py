from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from apps.accounts.scope import ScopedModelSerializer, ScopedSerializer


from .models import Alert, AlertRule, Delivery
from .webhooks import validate_webhook_url

MAX_EMAILS = 20


class AlertRuleSerializer(ScopedModelSerializer):
    emails = serializers.ListField(child=serializers.EmailField(max_length=254), max_length=MAX_EMAILS,
                                   required=False, default=list)
    webhook_secret_hint = serializers.CharField(read_only=True,
                                                help_text="The secret's last characters; the secret is shown once.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = AlertRule
        fields = ["id", "site", "name", "threshold_pct", "window_minutes", "min_detections", "enabled", "emails",
                  "webhook_url", "webhook_secret_hint", "cooldown_minutes", "created_by", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        # The (site, name) check is done in validate(), where the site is known on update.
        validators = []

    def validate_webhook_url(self, value):
        try:
            return validate_webhook_url(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None

    def validate_emails(self, value):
        return list(dict.fromkeys(e.strip().lower() for e in value))

    def validate(self, attrs):
        site = attrs.get("site", getattr(self.instance, "site", None))
        if self.instance is not None and "site" in attrs and attrs["site"] != self.instance.site:
            raise serializers.ValidationError({"site": "a rule cannot move to another site; make a new one"})
        name = attrs.get("name", getattr(self.instance, "name", None))
        clash = AlertRule.objects.filter(site=site, name=name)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError({"name": ["this site already has a rule with that name"]}, code="unique")
        return attrs


class AlertRuleCreatedSerializer(AlertRuleSerializer):
    webhook_secret = serializers.CharField(read_only=True, help_text="Shown once: store it to verify signatures.")

    class Meta(AlertRuleSerializer.Meta):
        fields = [*AlertRuleSerializer.Meta.fields, "webhook_secret"]


class WebhookSecretSerializer(ScopedSerializer):
    id = serializers.IntegerField()
    webhook_secret = serializers.CharField(help_text="Shown once: store it to verify signatures.")


class DeliverySerializer(ScopedModelSerializer):
    class Meta:
        model = Delivery
        fields = ["channel", "event", "status", "attempts", "last_error", "created_at", "delivered_at"]


class AlertSerializer(ScopedModelSerializer):
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    resolved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    deliveries = DeliverySerializer(many=True, read_only=True)

    class Meta:
        model = Alert
        fields = ["id", "rule", "rule_name", "site", "state", "threshold_pct", "value_pct", "detections", "negative",
                  "window_start", "window_end", "opened_at", "cleared_at", "acknowledged_by", "acknowledged_at",
                  "resolved_by", "resolved_at", "note", "deliveries"]
        read_only_fields = fields


class AlertActionSerializer(ScopedSerializer):
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True)
