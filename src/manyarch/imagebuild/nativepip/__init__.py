"""Native installs: a foreign platform's Python install line done on the host.

Emulating pip under QEMU costs minutes for what is, with wheels, a download
and an unzip. For a RUN line made only of install commands (``pip install``,
``pip wheel``, ``python -m venv``, ``uv pip install|sync|venv``, ``poetry
install``; ``&&``/``;``-chained, all understood),
:func:`~manyarch.imagebuild.nativepip.command.plan_run` returns a
:class:`NativePip`, else a :class:`Fallback` with the reason. Then
:mod:`.install` does each command: the target's facts read from the image's
files (:mod:`.target`), a pip line read as the image's pip reads it
(:mod:`.pipoptions`, :mod:`.pipline`), resolved by uv for the target's tags
(:mod:`.resolve`), sdists and projects built in the host sandbox
(:mod:`.build`, cross-compiled for a foreign target), the wheels placed as
pip places them (:mod:`.place`, :mod:`.bytecompile`) or saved as ``pip
wheel`` saves them (:mod:`.wheeldir`); venv, uv and poetry lines run the real
tool in the host's twin of the image's Debian python (:mod:`.twin`,
:mod:`.poetry`).

What cannot be done exactly raises :class:`NativePipUnavailable`, before the
rootfs is touched where it can be; :mod:`.interceptor` then lets the executor
run the line under emulation and says why.
"""
