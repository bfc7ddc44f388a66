"""Native apt for a foreign platform: the host's apt resolves, downloads and unpacks;
only the maintainer scripts and triggers run under QEMU (``--no-native-apt`` turns it off).

``command`` decides which RUN lines it takes (``apt-get update``, ``apt-get
install -y``, ``apt-get clean``, ``rm -rf /var/lib/apt/lists/*``); ``apt``
drives the host's apt and dpkg on the rootfs in the host-tool sandbox, then the
image's dpkg configures; ``interceptor`` is the executor's hook.
"""
