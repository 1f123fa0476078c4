"""The OS processes of nudaq (thin mains) and what they share."""
