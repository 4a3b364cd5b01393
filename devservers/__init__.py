"""Local stand-ins for the external services the gateway talks to (development and tests only)."""
