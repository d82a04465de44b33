"""Apps the end-to-end tests serve with ``wsa-fast serve --app tests.apps.MODULE:ATTR``."""
