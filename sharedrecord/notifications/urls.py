"""The notifications page, under /notifications/."""

from django.urls import path

from sharedrecord.notifications.views import notifications_page

app_name = "notifications"

urlpatterns = [path("", notifications_page, name="list")]
