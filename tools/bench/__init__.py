"""serd's benchmark (`python -m tools.bench`) and its measured workers (imports serd and tools.model only)."""
