from django.http import FileResponse, Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view, authentication_classes, permission_classes
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from apps.accounts.access import organisation_of, visible_sites
from apps.datasets.access import Researchers, datasets_of
from apps.sites.authentication import DeviceTokenAuthentication, IsDevice

from . import jobs, registry, rollout
from .models import Deployment, FineTuneJob, ModelVersion
from .serializers import (DeploymentSerializer, DeployRequestSerializer, FineTuneJobSerializer, ModelVersionSerializer,
                          OverrideSerializer)


def job_params(data):
    """Validated fine-tune options or a 400 naming the field."""
    body = {k: v for k, v in data.items() if k not in ("dataset", "base", "csrfmiddlewaretoken")}
    params = jobs.FineTuneParamsSerializer(data=body)
    params.is_valid(raise_exception=True)
    return dict(params.validated_data)


def _reference(queryset, data, field, what):
    """The object `data[field]` names among `queryset`. ValidationError: a 400 when the
    id is missing or not a whole number, a 404 (code does_not_exist,
    affectwatch/exceptions.py) when it is one that names nothing the caller can see."""
    value = data.get(field)
    if value in (None, ""):
        raise ValidationError({field: ["this field is required"]}, code="required")
    try:
        pk = int(value)
    except (TypeError, ValueError):
        raise ValidationError({field: [f"{what} ids are whole numbers"]}, code="invalid") from None
    found = queryset.filter(pk=pk).first()
    if found is None:
        raise ValidationError({field: [f"unknown {what}"]}, code="does_not_exist")
    return found


class FineTuneJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = FineTuneJobSerializer
    permission_classes = [Researchers]
    filterset_fields = ["dataset", "status"]

    def get_queryset(self):
        return FineTuneJob.objects.filter(organisation=organisation_of(self.request.user)).select_related(
            "dataset", "base", "model_version")

    def get_object(self):
        return jobs.reap_if_stale(super().get_object())

    def list(self, request, *args, **kwargs):
        jobs.reap_stale_jobs(self.get_queryset())
        return super().list(request, *args, **kwargs)

    @extend_schema(request=jobs.FineTuneRequestSerializer, responses={201: FineTuneJobSerializer})
    def create(self, request):
        """Start a fine-tune: `dataset` (id), optional `base` (model version id; default
        the shipped FER2013 LiExNet), and the options below."""
        user = request.user
        dataset = _reference(datasets_of(user), request.data, "dataset", "data set")
        base = None
        if request.data.get("base") not in (None, ""):
            base = _reference(registry.versions_for(dataset.organisation), request.data, "base", "model version")
            if not base.shipped and not base.weights_file:
                raise ValidationError({"base": "this model version has no torch weights to fine-tune"})
        params = job_params(request.data)
        errors = jobs.check_dataset(dataset, params)
        if errors:
            raise ValidationError(errors)
        job = jobs.start(dataset, params, user, base)
        return Response(FineTuneJobSerializer(job).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = jobs.cancel(self.get_object(), request.user)
        return Response(FineTuneJobSerializer(job).data)


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ModelVersionSerializer
    permission_classes = [Researchers]
    filterset_fields = ["status", "dataset", "name"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no database work
            return ModelVersion.objects.none()
        return registry.versions_for(organisation_of(self.request.user))

    def _own(self):
        mv = self.get_object()
        if mv.shipped:
            raise ValidationError({"detail": "the shipped model cannot be changed"}, code="conflict")
        return mv

    @extend_schema(request=OverrideSerializer, responses={200: ModelVersionSerializer})
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        """Make this the recommended version of its name. A version with blockers (rejected
        by the quality gate, trained with a withdrawn subject) needs an admin's override."""
        body = OverrideSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            mv = registry.promote(self._own(), request.user, body.validated_data.get("override", ""))
        except registry.Blocked as exc:
            raise ValidationError({"override": str(exc)}) from None
        return Response(ModelVersionSerializer(mv).data)

    @extend_schema(request=DeployRequestSerializer, responses={201: DeploymentSerializer})
    @action(detail=True, methods=["post"])
    def deploy(self, request, pk=None):
        """Roll this version out to a site's boards: the canary first, then the rest."""
        mv = self.get_object()
        # Scoped fields (apps.accounts.scope): another organisation's site or board reads
        # as one that does not exist.
        body = DeployRequestSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        site = body.validated_data["site"]
        canary = body.validated_data.get("canary")
        if canary is not None and canary.site_id != site.pk:
            raise ValidationError({"canary": "this board is not at the chosen site"})
        try:
            dep = rollout.deploy(mv, site, request.user, canary, body.validated_data.get("override", ""))
        except rollout.RolloutError as exc:
            raise ValidationError({"site": str(exc)}) from None
        return Response(DeploymentSerializer(dep).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=["onnx", "weights", "card"])],
                   responses={200: OpenApiResponse(description="the file")})
    @action(detail=True, methods=["get"], url_path=r"artifacts/(?P<kind>onnx|weights|card)")
    def artifacts(self, request, pk=None, kind=None):
        mv = self.get_object()
        name = {"onnx": mv.onnx_file, "weights": mv.weights_file, "card": mv.card_file}[kind]
        path = registry.artifact_path(name) if name else None
        if path is None or not path.is_file():
            raise Http404("no such artifact")
        filename = {"onnx": f"{mv.version}.onnx", "weights": f"{mv.version}.pt", "card": f"{mv.version}.json"}[kind]
        return FileResponse(open(path, "rb"), as_attachment=kind != "card", filename=filename.replace("@", "-"))


class DeploymentViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = DeploymentSerializer
    permission_classes = [Researchers]
    filterset_fields = ["site", "model_version", "status"]

    def get_queryset(self):
        return Deployment.objects.filter(organisation=organisation_of(self.request.user),
                                         site__in=visible_sites(self.request.user)).select_related(
            "model_version", "site", "canary")

    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        try:
            dep = rollout.rollback(self.get_object(), request.user)
        except rollout.RolloutError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return Response(DeploymentSerializer(dep).data)


@extend_schema(responses={200: OpenApiResponse(description="the ONNX model file"),
                          404: OpenApiResponse(description="not a version this device may download")})
@api_view(["GET"])
@authentication_classes([DeviceTokenAuthentication])
@permission_classes([IsDevice])
def device_model(request, version):
    """A model file for a board (`Authorization: Device <token>`): the shipped model, or a
    version deployed to the board's organisation."""
    mv = registry.downloadable_by(request.auth, version)
    path = registry.artifact_path(mv.onnx_file) if mv else None
    if path is None or not path.is_file():
        return Response({"detail": f"model {version} is not available to this device"}, status=404)
    res = FileResponse(open(path, "rb"), content_type="application/octet-stream", as_attachment=True,
                       filename=f"{mv.version.replace('@', '-')}.onnx")
    res["X-Model-Sha256"] = mv.sha256
    return res
