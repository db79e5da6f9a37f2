"""Plugin logic without widgets: engine client, capture, results. Never imports torch."""
