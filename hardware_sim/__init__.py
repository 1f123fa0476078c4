"""Simulated hardware: the detector-physics generator and serial devices that speak the
front-end protocol (daq.formats.protocol) byte for byte."""
