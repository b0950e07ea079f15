from django.db import transaction
from django.http import FileResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from apps.accounts.access import audit, organisation_of

from . import importer
from .services import delete_samples, withdraw_consent
from .access import Researchers, datasets_of, samples_of, subjects_of
from .serializers import DatasetImportSerializer, DatasetSerializer, SampleSerializer, SubjectSerializer


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="a zip with manifest.csv (path,label,is_worker,subject_id) and the images")


class DatasetViewSet(viewsets.ModelViewSet):
    serializer_class = DatasetSerializer
    permission_classes = [Researchers]

    def get_queryset(self):
        return datasets_of(self.request.user)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "organisation": organisation_of(self.request.user)}

    def perform_create(self, serializer):
        ds = serializer.save(organisation=organisation_of(self.request.user), created_by=self.request.user)
        audit(self.request, "dataset.create", ds)

    def perform_destroy(self, instance):
        with transaction.atomic():
            delete_samples(instance.samples.all())
            audit(self.request, "dataset.delete", instance)
            instance.delete()

    @extend_schema(request={"multipart/form-data": ImportUploadSerializer}, responses={201: DatasetImportSerializer,
                                                                                      400: DatasetImportSerializer})
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser, FormParser])
    def imports(self, request, pk=None):
        """Import a zip. 201 with the import record, or 400 with a reason per rejected file
        (and nothing stored)."""
        dataset = self.get_object()
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationError({"file": "attach the zip as `file`"})
        record = importer.import_zip(dataset, upload, request.user)
        audit(request, "dataset.import", dataset, status=record.status, accepted=record.accepted,
              rejected=len(record.errors))
        code = status.HTTP_201_CREATED if record.status == record.Status.ACCEPTED else status.HTTP_400_BAD_REQUEST
        return Response(DatasetImportSerializer(record).data, status=code)

    @extend_schema(parameters=[
        OpenApiParameter("mode", str, enum=["holdout", "kfold"]), OpenApiParameter("test_fraction", float),
        OpenApiParameter("folds", int), OpenApiParameter("seed", int), OpenApiParameter("val_fraction", float)])
    @action(detail=True, methods=["get"])
    def split(self, request, pk=None):
        """Preview the subject-wise train / validation / test split (or folds) a fine-tune would use."""
        from workers.finetune import FinetuneError  # torch: imported when needed, not at startup

        from .splits import split_preview

        dataset = self.get_object()
        try:
            mode = request.query_params.get("mode", "holdout")
            frac = float(request.query_params.get("test_fraction", 0.4))
            folds = int(request.query_params.get("folds", 5))
            seed = int(request.query_params.get("seed", 0))
            val = float(request.query_params.get("val_fraction", 0.25))
        except ValueError:
            raise ValidationError({"detail": "test_fraction and val_fraction must be numbers; folds and seed "
                                             "integers"}) from None
        if not 0.05 <= frac <= 0.95:
            raise ValidationError({"test_fraction": "must be between 0.05 and 0.95"})
        if not 0.1 <= val <= 0.5:
            raise ValidationError({"val_fraction": "must be between 0.1 and 0.5"})
        try:
            return Response({"mode": mode, "splits": split_preview(dataset, mode, frac, folds, seed, val)})
        except FinetuneError as exc:
            raise ValidationError({"detail": str(exc)}) from None


class SubjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                     mixins.UpdateModelMixin, viewsets.GenericViewSet):
    serializer_class = SubjectSerializer
    permission_classes = [Researchers]
    filterset_fields = ["dataset", "is_worker"]

    def get_queryset(self):
        return subjects_of(self.request.user)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "organisation": organisation_of(self.request.user)}

    def perform_create(self, serializer):
        s = serializer.save(consent_recorded_by=self.request.user, consent_recorded_at=timezone.now())
        audit(self.request, "subject.consent", s, dataset=s.dataset_id, scope=s.consent_scope)

    def perform_update(self, serializer):
        s = serializer.save(consent_recorded_by=self.request.user, consent_recorded_at=timezone.now())
        audit(self.request, "subject.update", s, dataset=s.dataset_id)

    @action(detail=True, methods=["post"], url_path="withdraw-consent")
    def withdraw_consent(self, request, pk=None):
        """The subject withdrew consent: their images and every picture derived from them
        are deleted, jobs and model versions trained with them are marked; the record stays."""
        subject = self.get_object()
        withdraw_consent(subject, request)
        return Response(SubjectSerializer(subjects_of(request.user).get(pk=subject.pk)).data)


class SampleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = SampleSerializer
    permission_classes = [Researchers]
    filterset_fields = {"dataset": ["exact"], "label": ["exact"], "subject__code": ["exact"],
                        "subject__is_worker": ["exact"]}

    def get_queryset(self):
        return samples_of(self.request.user)

    @action(detail=True, methods=["get"])
    def image(self, request, pk=None):
        sample = self.get_object()
        types = {".jpg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp", ".webp": "image/webp"}
        res = FileResponse(sample.image.open("rb"), content_type=types.get(sample.extension, "application/octet-stream"))
        res["Cache-Control"] = "private, max-age=3600"
        return res


class DatasetImportViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = DatasetImportSerializer
    permission_classes = [Researchers]
    filterset_fields = ["dataset", "status"]

    def get_queryset(self):
        from .models import DatasetImport

        return DatasetImport.objects.filter(dataset__organisation=organisation_of(self.request.user))
