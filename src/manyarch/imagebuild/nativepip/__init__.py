"""Native pip: run a foreign platform's ``RUN pip install ...`` on the host.

Emulating pip under QEMU costs minutes for what is, with wheels, a download
and an unzip. For a RUN line that is only ``pip install`` (``pip``, ``pip3``,
``python3 -m pip``; ``&&``-chained parts all understood),
:func:`~manyarch.imagebuild.nativepip.command.plan_run` returns a
:class:`NativePip`, else a :class:`Fallback` with the reason. Then

1. :mod:`.target` asks the target interpreter once, under emulation, for its
   facts (:class:`TargetFacts`: the exact tags its pip supports, its marker
   environment, the install schemes pip would use), cached by base digest and
   interpreter digest;
2. :mod:`.install` resolves on the host with the host's pip (:mod:`.hostpip`),
   patched to see the target's tags, markers and already-installed
   distributions (``pip install --dry-run --report``, ``--only-binary=:all:``);
3. fetches the wheels (a content-addressed wheel cache, pip's HTTP cache), and
   places them with ``installer`` into the rootfs with the target's scheme and
   shebang, with pip's ``INSTALLER`` and ``REQUESTED`` markers.

A requirement without a wheel for the target raises :class:`NativePipUnavailable`
before the rootfs is touched; :mod:`.interceptor` then lets the executor run the
line under emulation.
"""
