from django.urls import path

from optout import views

app_name = "optout-pages"
urlpatterns = [
    path("", views.optout_list_page, name="list"),
    path("record", views.optout_record_page, name="record"),
    path("objections/", views.optout_objection_page, name="objections"),
    path("<uuid:optout_id>", views.optout_detail_page, name="detail"),
    path("<uuid:optout_id>/opt-in", views.optout_optin_page, name="optin"),
]
