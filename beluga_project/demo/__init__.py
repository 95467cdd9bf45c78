"""A demo app whose workflows.py shows what a site writes."""
