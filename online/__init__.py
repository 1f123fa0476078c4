"""nudaq online: physics, statistics and analysis, monitoring and alarms, the web (reads what
daq stores; never imports hardware_sim)."""
