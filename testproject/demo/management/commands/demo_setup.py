"""``manage.py demo_setup``: migrate the demo database and create the superuser admin/admin."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Apply migrations, then create the superuser 'admin' with password 'admin' if missing (demo only)."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0, interactive=False)
        users = get_user_model()
        user, created = users.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"}
        )
        if created:
            user.set_password("admin")
            user.save()
        self.stdout.write(f"Database ready; admin user 'admin' (password 'admin') {'created' if created else 'exists'}.")
