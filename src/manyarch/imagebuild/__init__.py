"""Building images: base images from Debian packages, and the per-platform build steps."""
