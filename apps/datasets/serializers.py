from django.utils import timezone
from rest_framework import serializers

from apps.accounts.scope import ScopedModelSerializer

from .models import Dataset, DatasetImport, Sample, Subject


class DatasetSerializer(ScopedModelSerializer):
    samples = serializers.IntegerField(source="sample_count", read_only=True, default=0)
    subjects = serializers.IntegerField(source="subject_count", read_only=True, default=0)

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "created_at", "samples", "subjects"]
        read_only_fields = ["created_at"]

    def validate_name(self, value):
        org = self.context["organisation"]
        qs = Dataset.objects.filter(organisation=org, name=value)
        if self.instance:
            qs = qs.exclude(pk=self.instance.pk)
        if qs.exists():
            raise serializers.ValidationError("a data set with this name already exists", code="unique")
        return value


class SubjectSerializer(ScopedModelSerializer):
    has_consent = serializers.BooleanField(read_only=True)
    consent_recorded_by = serializers.StringRelatedField(read_only=True)
    samples = serializers.IntegerField(source="sample_count", read_only=True, default=0)

    class Meta:
        model = Subject
        fields = ["id", "dataset", "code", "is_worker", "consent_given_at", "consent_scope", "consent_recorded_by",
                  "consent_recorded_at", "consent_withdrawn_at", "has_consent", "samples"]
        read_only_fields = ["consent_recorded_at", "consent_withdrawn_at"]
        extra_kwargs = {"consent_given_at": {"required": True, "allow_null": False},
                        "consent_scope": {"required": True, "allow_blank": False}}

    def validate_dataset(self, value):
        if value.organisation_id != self.context["organisation"].id:
            raise serializers.ValidationError("unknown data set", code="does_not_exist")
        return value

    def validate_consent_given_at(self, value):
        if value > timezone.now():
            raise serializers.ValidationError("consent cannot be given in the future")
        return value

    def validate(self, attrs):
        dataset = attrs.get("dataset") or (self.instance and self.instance.dataset)
        code = attrs.get("code") or (self.instance and self.instance.code)
        qs = Subject.objects.filter(dataset=dataset, code=code)
        if self.instance:
            qs = qs.exclude(pk=self.instance.pk)
        if qs.exists():
            raise serializers.ValidationError({"code": ["this data set already has a subject with this code"]}, code="unique")
        return attrs


class SampleSerializer(ScopedModelSerializer):
    subject = serializers.CharField(source="subject.code", read_only=True)
    is_worker = serializers.BooleanField(source="subject.is_worker", read_only=True)
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = Sample
        fields = ["id", "dataset", "subject", "is_worker", "label", "context", "width", "height", "sha256",
                  "original_name", "created_at", "image_url"]

    def get_image_url(self, obj) -> str:
        return f"/api/v1/samples/{obj.id}/image/"


class DatasetImportSerializer(ScopedModelSerializer):
    uploaded_by = serializers.StringRelatedField()

    class Meta:
        model = DatasetImport
        fields = ["id", "dataset", "filename", "size", "status", "accepted", "errors", "uploaded_by", "created_at"]
