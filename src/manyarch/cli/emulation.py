"""``manyarch emulation status | install [ARCH|all] | uninstall [ARCH|all]``."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the ``emulation`` command."""
    p = sub.add_parser("emulation", help="show, install or remove QEMU emulation handlers")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    st = s.add_parser("status", help="which architectures run here, and how")
    st.set_defaults(func=_status)
    for name, func, help_ in (
        ("install", _install, "register qemu-user-static handlers (root)"),
        ("uninstall", _uninstall, "remove qemu handlers (root)"),
    ):
        q = s.add_parser(name, help=help_)
        q.add_argument("arch", nargs="*", default=["all"], help="arm64, arm, ... or all")
        q.set_defaults(func=func)


def _arches(names: list[str]) -> list[str]:
    from manyarch.oci.platform import Platform, host_platform
    from manyarch.sandbox import emulation

    if "all" in names:
        host = host_platform()
        return [
            a
            for a in emulation.available_arches()
            if not emulation.runs_natively(Platform.of("linux", a), host)
        ]
    return [Platform.of("linux", n).architecture for n in names]


def _status(args: argparse.Namespace) -> int:
    from manyarch.oci.platform import Platform, host_platform
    from manyarch.sandbox import emulation

    host = host_platform()
    print(f"host: {host}")
    for arch in emulation.QEMU_ARCH:
        plat = Platform.of("linux", arch)
        if emulation.runs_natively(plat, host):
            how = "native"
        else:
            h = emulation.handler_for(arch)
            how = f"emulated ({h.interpreter}, flags {h.flags})" if h else "no"
        print(f"  {plat!s:<16} {how}")
    return 0


def _install(args: argparse.Namespace) -> int:
    from manyarch.sandbox import emulation

    for arch in _arches(args.arch):
        h = emulation.install(arch)
        print(f"{arch}: {h.name} -> {h.interpreter} (flags {h.flags})")
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    from manyarch.sandbox import emulation

    for arch in _arches(args.arch):
        removed = emulation.uninstall(arch)
        print(f"{arch}: {'removed' if removed else 'not registered'}")
    return 0
