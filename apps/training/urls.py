from django.urls import path

from apps.datasets import views as dataset_views

from . import views

app_name = "research"
urlpatterns = [
    path("", views.home, name="home"),
    path("datasets/new/", dataset_views.create_dataset, name="dataset-create"),
    path("datasets/<int:dataset_id>/", dataset_views.dataset_detail, name="dataset"),
    path("datasets/<int:dataset_id>/import/", dataset_views.import_upload, name="dataset-import"),
    path("datasets/<int:dataset_id>/subjects/", dataset_views.add_subject, name="subject-add"),
    path("datasets/<int:dataset_id>/subjects/<int:subject_id>/withdraw/", dataset_views.withdraw_consent,
         name="subject-withdraw"),
    path("datasets/<int:dataset_id>/fine-tune/", views.start_job, name="job-start"),
    path("jobs/<int:job_id>/", views.job_detail, name="job"),
    path("jobs/<int:job_id>/cancel/", views.cancel_job, name="job-cancel"),
    path("models/<int:version_id>/", views.version_detail, name="version"),
    path("models/compare/", views.compare_versions, name="compare"),
    path("models/<int:version_id>/promote/", views.promote_version, name="version-promote"),
    path("models/<int:version_id>/deploy/", views.deploy_version, name="version-deploy"),
    path("deployments/<int:deployment_id>/rollback/", views.rollback_deployment, name="deployment-rollback"),
    path("files/<path:path>", views.artifact, name="artifact"),
]
