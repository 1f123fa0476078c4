"""Simulated hardware: detector-physics generator and serial devices speaking daq.protocol."""
