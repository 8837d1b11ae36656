import sys

from django.core.management.base import BaseCommand, CommandError

from signals_app.content_import import import_paths


class Command(BaseCommand):
    help = (
        "Import content documents (.txt in the exported format, or .json with the same "
        "fields) from files and directories. Creates or updates items by reference; "
        "unchanged documents are left alone; changed ones go back to needs_review. "
        "Prints `created N, updated N, unchanged N, failed N` and exits non-zero when a "
        "document failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
        parser.add_argument(
            "--dry-run", action="store_true", help="parse and compare, write nothing"
        )

    def handle(self, *args, paths, dry_run, **options):
        progress = ProgressBar(self.stderr._out) if _is_terminal(self.stderr._out) else None
        result = import_paths(paths, dry_run=dry_run, progress=progress)
        if progress:
            progress.finish()
        for message in result.errors:
            self.stderr.write(f"failed: {message}")
        if dry_run:
            self.stdout.write("dry run: nothing was written")
        self.stdout.write(result.summary)
        if result.failed:
            raise CommandError(f"{result.failed} document(s) could not be imported; see above")


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ProgressBar:
    """A one-line progress bar, redrawn per chunk; only ever drawn on a terminal."""

    WIDTH = 30

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.drawn = False

    def __call__(self, done, total):
        filled = self.WIDTH * done // total if total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\rimporting [{bar}] {done}/{total} files")
        self.stream.flush()
        self.drawn = True

    def finish(self):
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
