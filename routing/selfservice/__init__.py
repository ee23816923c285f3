"""Self-service before a human: knowledge search and deflection tracking."""
