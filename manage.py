#!/usr/bin/env python
"""Django's command-line utility. The project is installed into the virtualenv (pip install -e .),
so the source roots are importable without touching sys.path."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
