"""The ``lorag`` command line: argument parsing that delegates to the application layer."""
