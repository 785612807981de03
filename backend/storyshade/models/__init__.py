"""Finding, checking and loading models from local folders; never from a hub."""
