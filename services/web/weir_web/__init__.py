"""weir-web: the HTTP API (`/api/v1`) over the scheduler's NATS API and streams."""
