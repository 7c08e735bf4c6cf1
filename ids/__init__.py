"""ids: deep-learning network intrusion detection experiments."""
