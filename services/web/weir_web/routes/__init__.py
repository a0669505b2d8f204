"""The `/api/v1` endpoints, one module per resource."""
