"""archive-core's admin pages, under /archive-core/ (Portal includes them in the namespace
`archive_core_portal`, from the IPluginURL plugin in plugin.py)."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "archive_core_portal"

urlpatterns = [
    path("archive-core/", views.OverviewView.as_view(), name="overview"),
    path("archive-core/targets/new/", views.TargetView.as_view(), name="target_new"),
    path("archive-core/targets/<str:name>/", views.TargetView.as_view(), name="target"),
    path(
        "archive-core/targets/<str:name>/test/",
        views.TargetTestView.as_view(),
        name="target_test",
    ),
    path("archive-core/policies/new/", views.PolicyView.as_view(), name="policy_new"),
    path("archive-core/policies/<str:uuid>/", views.PolicyView.as_view(), name="policy"),
    path("archive-core/history/", views.HistoryView.as_view(), name="history"),
    path(
        "archive-core/history/<int:number>/revert/",
        views.RevertView.as_view(),
        name="revert",
    ),
]
