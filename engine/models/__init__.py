"""Model architectures, the weights registry, downloads and safe checkpoint loading."""
