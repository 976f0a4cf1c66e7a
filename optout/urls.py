from django.urls import path

from optout import apis

app_name = "optouts"
urlpatterns = [
    path("", apis.OptOutListApi.as_view(), name="list"),
    path("check", apis.OptOutCheckApi.as_view(), name="check"),
    path("register", apis.OptOutRegisterApi.as_view(), name="register"),
    path("withdraw", apis.OptOutWithdrawApi.as_view(), name="withdraw"),
    path("export.csv", apis.OptOutExportApi.as_view(), name="export"),
    path("objections", apis.OptOutObjectionRecordApi.as_view(), name="objections"),
    path("objections/check", apis.OptOutObjectionCheckApi.as_view(), name="objections-check"),
    path("<uuid:optout_id>", apis.OptOutDetailApi.as_view(), name="detail"),
]
