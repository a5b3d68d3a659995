from django.apps import AppConfig


class SampleAppConfig(AppConfig):
    name = "tests.sampleapp"
    label = "sampleapp"
