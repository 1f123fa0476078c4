"""Monitoring: alarm conditions and the monitoring process (alarms, live analysis cadence)."""
