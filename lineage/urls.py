from django.urls import path

from lineage import views

urlpatterns = [
    path("lineage/", views.lineage_explorer, name="lineage_explorer"),
    path("lineage/graph/", views.lineage_graph, name="lineage_graph"),
]
