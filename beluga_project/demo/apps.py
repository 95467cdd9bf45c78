from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "beluga_project.demo"
    label = "beluga_demo"
    verbose_name = "Demo workflows"
