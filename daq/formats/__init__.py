"""Byte formats: the serial protocol, the ZeroMQ wire batches, raw run files and their index."""
