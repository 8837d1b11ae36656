from django.core.management.base import BaseCommand, CommandError

from signals_app.roles import MissingPermissions, setup_roles


class Command(BaseCommand):
    help = (
        "Create or update the groups Owners and Reviewers with their model permissions. "
        "Safe to run again: each group ends with exactly the permissions listed."
    )

    def handle(self, *args, **options):
        try:
            lines = setup_roles()
        except MissingPermissions as error:
            raise CommandError(str(error)) from error
        for line in lines:
            self.stdout.write(line)
