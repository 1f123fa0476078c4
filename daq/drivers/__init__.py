"""pyserial drivers of the front-ends and the slow-control device (no physics)."""
