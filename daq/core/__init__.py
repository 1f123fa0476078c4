"""Core of nudaq: record layouts, units, errors, configuration, plugin registry."""
