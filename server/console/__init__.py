"""The web console: static pages at /console that use the public HTTP API."""
