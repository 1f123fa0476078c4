"""Run control and supervision: the run state machine, transitions, process supervision."""
