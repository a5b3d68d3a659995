from django.urls import path

from demo import views

app_name = "demo"
urlpatterns = [
    path("", views.index, name="index"),
    path("enqueue/<str:kind>/", views.enqueue, name="enqueue"),
    path("jobs/", views.job_list, name="jobs"),
    path("clear/", views.clear, name="clear"),
]
