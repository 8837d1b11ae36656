import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the superuser `admin` if it does not exist. The password comes from "
        "DJANGO_SUPERUSER_PASSWORD or is generated and printed once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(
                f"admin user {username!r} exists; password unchanged (forgot it? "
                f".venv/bin/python manage.py changepassword {username})"
            )
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
            self.stdout.write(f"created admin user {username!r} (password from the environment)")
        else:
            self.stdout.write(
                self.style.SUCCESS(f"created admin user {username!r} with password: {password}")
            )
