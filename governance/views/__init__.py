"""The web UI of governance, one module per subject; ``helpers`` is what every app's views share."""
