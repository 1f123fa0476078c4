"""Replay of recorded runs through the live builder: orchestration, message planning, scans."""
