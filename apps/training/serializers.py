from rest_framework import serializers

from apps.accounts.scope import ScopedModelSerializer, ScopedSerializer

from apps.sites.models import Device, Site

from .models import Deployment, FineTuneJob, ModelVersion


class FineTuneJobSerializer(ScopedModelSerializer):
    dataset_name = serializers.CharField(source="dataset.name", read_only=True)
    base_version = serializers.CharField(source="base.version", read_only=True, default=None, allow_null=True)
    model_version_name = serializers.CharField(source="model_version.version", read_only=True, default=None)

    class Meta:
        model = FineTuneJob
        fields = ["id", "dataset", "dataset_name", "base", "base_version", "params", "status", "cancel_requested",
                  "progress", "results", "gradcam", "error", "attempts", "worker", "heartbeat_at", "model_version",
                  "model_version_name", "created_at", "started_at", "finished_at"]


class ModelVersionSerializer(ScopedModelSerializer):
    base_version = serializers.CharField(source="base.version", read_only=True, default=None, allow_null=True)
    shipped = serializers.BooleanField(read_only=True)
    artifacts = serializers.SerializerMethodField()
    blockers = serializers.ListField(child=serializers.CharField(), read_only=True,
                                     help_text="why it may not be promoted or deployed without an admin override")

    class Meta:
        model = ModelVersion
        fields = ["id", "version", "name", "number", "arch", "labels", "preprocess", "base", "base_version",
                  "dataset", "dataset_name", "hyperparameters", "metrics", "sha256", "size", "status",
                  "promoted_at", "created_at", "shipped", "artifacts", "rejected_reasons", "withdrawn_subjects",
                  "blockers", "override_note"]

    def get_artifacts(self, obj) -> dict:
        base = f"/api/v1/model-versions/{obj.id}/artifacts"
        out = {"onnx": f"{base}/onnx/"}
        if obj.weights_file:
            out["weights"] = f"{base}/weights/"
        if obj.card_file:
            out["card"] = f"{base}/card/"
        return out


class DeploymentSerializer(ScopedModelSerializer):
    version = serializers.CharField(source="model_version.version", read_only=True)
    site_name = serializers.CharField(source="site.name", read_only=True)
    canary_name = serializers.CharField(source="canary.name", read_only=True, default=None)

    class Meta:
        model = Deployment
        fields = ["id", "site", "site_name", "model_version", "version", "canary", "canary_name", "status", "events",
                  "created_at", "updated_at"]


class DeployRequestSerializer(ScopedSerializer):
    site = serializers.PrimaryKeyRelatedField(queryset=Site.objects.all())
    canary = serializers.PrimaryKeyRelatedField(queryset=Device.objects.all(), required=False, allow_null=True,
                                                help_text="the board to try it first (default: an online one)")
    override = serializers.CharField(required=False, allow_blank=True, max_length=500,
                                     help_text="an administrator's reason to deploy a version with blockers")


class OverrideSerializer(serializers.Serializer):
    override = serializers.CharField(required=False, allow_blank=True, max_length=500,
                                     help_text="an administrator's reason to promote a version with blockers")
