"""Sandboxes (bubblewrap, or unshare + chroot) and emulation (binfmt_misc + QEMU)."""
