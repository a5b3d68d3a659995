"""URLs of the test suite: the admin (the control plane's pages hang off it)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
