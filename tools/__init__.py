"""Training, export and evaluation tools for serd (TensorFlow lives here, never in serd/)."""
