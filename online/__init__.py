"""nudaq online: SQL storage, spectrum filling, physics and analysis, web monitoring."""
