"""Built-in event handlers."""
