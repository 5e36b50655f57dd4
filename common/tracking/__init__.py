"""What a run leaves behind: the SQLite run store (and, later, exporters)."""
