"""Template tags of the workflow admin (``{% load beluga_workflows_admin %}``)."""
