"""Event building: batches in, tagged events and storage increments out (no I/O)."""
