"""Debian: architectures, .deb files and the dpkg database, read and written as dpkg does."""
