"""URLs of the correlation and metrics tests (with the testproject's MIDDLEWARE)."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from django_jobs.correlation import get_correlation_id
from django_jobs.metrics import metrics_view
from tests.testapp.jobs_observability import checkout


def checkout_view(request: HttpRequest, order_id: int) -> JsonResponse:
    result = checkout.enqueue(order_id)
    return JsonResponse({"job_id": result.id, "correlation_id": get_correlation_id()})


async def async_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"correlation_id": get_correlation_id()})


urlpatterns = [
    path("checkout/<int:order_id>/", checkout_view),
    path("async/", async_view),
    path("metrics/", metrics_view),
]
