from django.urls import path

from ingestion import views

app_name = "operations"
urlpatterns = [
    path("feeds", views.feed_health_page, name="feeds"),
    path("feeds/replay/<uuid:message_id>", views.feed_replay_page, name="replay"),
]
