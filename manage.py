#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dqregistry.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as error:
        # A setting from the environment that cannot work (dqregistry/settings.py names the
        # variable, what it expects and what it received): that line, not a traceback.
        sys.exit(f"ImproperlyConfigured: {error}")


if __name__ == "__main__":
    main()
