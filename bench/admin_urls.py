"""URLs of ``python -m bench.admin_pages``: the admin only."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
