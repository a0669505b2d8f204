"""weir's benchmark harness: `./just bench` (see bench/README.md). Not part of the tests."""
