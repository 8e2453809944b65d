"""The dashboard's pages, one module per area; shared helpers are in `dashboard.web`."""
