"""Feature-space synthesis (notebook 03): SimpleNet and GLASS-global on the shared machinery of `space`."""
