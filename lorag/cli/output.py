"""How commands print their results."""

from __future__ import annotations

import json


def print_json(value: object) -> None:
    """Print ``value`` as indented JSON (dates and paths as strings)."""
    print(json.dumps(value, indent=2, default=str))
