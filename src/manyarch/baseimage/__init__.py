"""Base images from Debian packages, for every architecture at once, without emulation.

For each platform, ``mmdebstrap --variant=extract`` downloads the packages and
their dependencies for that architecture and only *unpacks* them: no maintainer
script runs, so nothing foreign is executed and no QEMU is needed. What those
scripts would have done is then done here, on the host, as plain file work:

- ``/var/lib/dpkg/status`` and ``info/*.list|md5sums|conffiles`` written from the
  packages' control data, so ``dpkg -l``, trivy and grype see what is installed;
- ``/etc/passwd`` and ``/etc/group`` from base-passwd's masters, plus a
  ``nonroot`` user and group (uid/gid 65532, as in distroless);
- the CA bundle ``/etc/ssl/certs/ca-certificates.crt`` (and the hashed links);
- ``/etc/localtime`` (UTC), the ``/usr/local`` tree, ``/etc/profile``;
- the Python modules byte-compiled (hash-checked pycs) by a host interpreter of
  the same bytecode version: bytecode is the same on every CPU;
- for ``--preset python``: PEP 668's ``EXTERNALLY-MANAGED`` marker removed, so
  ``pip install`` behaves as in the official ``python`` image (it installs into
  ``/usr/local/lib/python3.X/dist-packages``; Debian's own modules stay apart).

The rootfs becomes one deterministic layer (mtimes clamped to
``SOURCE_DATE_EPOCH``), with a config (Env, labels naming suite and mirror), in
a per-platform cache entry keyed on every input; an index is assembled over the
cached platform images. Building touches no output: writing a layout or
pushing is the caller's step, after every platform has succeeded.
"""
