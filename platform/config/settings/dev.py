"""The embedded defaults: no environment needed. SQLite, local Celery broker, console email."""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")

from config.settings.base import *

WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
