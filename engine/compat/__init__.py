"""Work-arounds for third-party packages, each in its own module and active only when needed."""
