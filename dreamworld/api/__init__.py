"""The AUTOMATIC1111 web UI HTTP API (issue 16); models.py derives its request models from schema.FIELDS."""
