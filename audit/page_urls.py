from django.urls import path

from audit import views

app_name = "governance"
urlpatterns = [
    path("", views.governance_home_page, name="home"),
    path("events", views.governance_events_page, name="events"),
    path("events.csv", views.governance_export, name="export"),
    path("events/<int:event_id>", views.governance_event_page, name="event"),
    path("reviews", views.governance_reviews_page, name="reviews"),
    path("subject-access", views.subject_access_page, name="subject-access"),
]
