"""The host's apt for the target's architecture, on the rootfs's own dpkg status and sources.

``APT_CONFIG`` points apt at the rootfs (``Dir``): its sources, keyrings, dpkg
status, lists and ``apt.conf.d`` are the image's, its architecture the
target's; the .debs go to a cache shared by every build. apt's dpkg is a
wrapper running the host's dpkg with ``--root`` (files and database written
natively; preinsts chrooted, so emulated) that skips ``--configure``: the
image's own dpkg configures afterwards (``dpkg --configure -a``, under QEMU),
so only maintainer scripts and triggers are emulated. apt, dpkg and the
wrapper run in the host-tool sandbox with only the rootfs, the cache and the
wrapper writable or visible.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from manyarch.debian import install
from manyarch.debian.deb import parse_control
from manyarch.errors import BuildError, ManyarchError
from manyarch.imagebuild.nativeapt.command import AptCommand, NativeApt
from manyarch.imagebuild.nativepip.command import NativePipUnavailable
from manyarch.sandbox.host import run_host_tool
from manyarch.sandbox.rootpath import resolve_in_root

#: apt's hooks that run programs: they would run the host's, so such images are emulated.
_HOOKS = ("Pre-Invoke", "Post-Invoke", "Pre-Install-Pkgs", "Post-Invoke-Success")
#: The one hook Debian sets (debconf's 70debconf): it only pre-asks debconf's questions,
#: which the noninteractive configure answers the same way.
_PRECONFIGURE = "dpkg-preconfigure --apt"
#: debian:SUITE-slim's (and so python:3.X-slim's) /etc/apt/apt.conf.d/docker-clean runs this
#: after dpkg and after update: done here, natively, at the same points.
DOCKER_CLEAN = (
    "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb "
    "/var/cache/apt/*.bin || true"
)
_PROXIES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
_WRAPPER = """#!/bin/sh
# apt's dpkg: the host's, into the rootfs; configuring is the image's dpkg's work, later
for a do
  case "$a" in --configure|--triggers-only) exit 0 ;; esac
done
exec dpkg --root={root} --force-architecture --force-unsafe-io "$@"
"""


def deb_cache(cache_dir: Path) -> Path:
    """The shared .deb cache (``manyarch prune`` trims it)."""
    return cache_dir / "apt" / "archives"


def check_config(rootfs: Path) -> str | None:
    """Why the image's apt configuration cannot be followed by the host's apt, or None."""
    if resolve_in_root(rootfs, "/etc/apt/apt.conf").exists():
        return "the image has an /etc/apt/apt.conf"
    parts = resolve_in_root(rootfs, "/etc/apt/apt.conf.d")
    if not parts.is_dir():
        return None
    for f in sorted(parts.iterdir()):
        if not f.is_file() or f.is_symlink():
            continue
        for line in f.read_text("utf-8", "replace").splitlines():
            text = line.split("//", 1)[0].strip()
            if text.startswith("#") or not any(h in text for h in _HOOKS):
                continue
            if _PRECONFIGURE not in text and f'"{DOCKER_CLEAN}"' not in text:
                return f"apt hook in /etc/apt/apt.conf.d/{f.name}: {text}"
    return None


def has_docker_clean(rootfs: Path) -> bool:
    """Whether the image's apt runs :data:`DOCKER_CLEAN` (after check_config accepted it)."""
    parts = resolve_in_root(rootfs, "/etc/apt/apt.conf.d")
    if not parts.is_dir():
        return False
    return any(
        f.is_file() and not f.is_symlink() and DOCKER_CLEAN in f.read_text("utf-8", "replace")
        for f in parts.iterdir()
    )


def docker_clean(rootfs: Path) -> None:
    """What :data:`DOCKER_CLEAN` removes."""
    cache = resolve_in_root(rootfs, "/var/cache/apt")
    for pattern in ("archives/*.deb", "archives/partial/*.deb", "*.bin"):
        for p in cache.glob(pattern):
            if p.is_file() or p.is_symlink():
                p.unlink()


def _status(rootfs: Path) -> dict[tuple[str, str], str]:
    """``(package, arch) -> version`` of what dpkg has unpacked or installed."""
    path = resolve_in_root(rootfs, "/var/lib/dpkg/status")
    out: dict[tuple[str, str], str] = {}
    for para in path.read_text("utf-8", "replace").split("\n\n"):
        if not para.strip():
            continue
        f = dict(parse_control(para))
        if f.get("Status", "").split()[-1:] != ["not-installed"]:
            out[(f.get("Package", ""), f.get("Architecture", ""))] = f.get("Version", "")
    return out


class HostApt:
    """apt-get on the host for one rootfs of Debian architecture ``arch``."""

    def __init__(self, rootfs: Path, arch: str, cache_dir: Path, env: Mapping[str, str]) -> None:
        self.rootfs = rootfs
        self.arch = arch
        self.archives = deb_cache(cache_dir)
        self.env = env
        self.docker_clean = has_docker_clean(rootfs)

    def _config(self, tmp: Path) -> Path:
        root = str(self.rootfs)
        (tmp / "dpkg").write_text(_WRAPPER.format(root=root))
        (tmp / "dpkg").chmod(0o755)
        # read after the image's apt.conf.d (as its apt.conf would be): no host program runs
        (tmp / "last.conf").write_text(
            "#clear DPkg::Pre-Install-Pkgs;\n#clear DPkg::Post-Invoke;\n"
            "#clear APT::Update::Post-Invoke;\n"
        )
        conf = tmp / "apt.conf"
        conf.write_text(
            f'Dir "{root}/";\n'
            f'Dir::Etc::main "{tmp}/last.conf";\n'
            f'Dir::Cache::archives "{self.archives}/";\n'
            f'Dir::Bin::dpkg "{tmp}/dpkg";\n'
            f'APT::Architecture "{self.arch}";\n'
            f'APT::Architectures {{ "{self.arch}"; }};\n'
            # the sandbox has no _apt user; apt's own privilege drop is not needed in it
            'APT::Sandbox::User "root";\n'
            'APT::Immediate-Configure "false";\n'
        )
        return conf

    def run(self, args: list[str]) -> str:
        """``apt-get ARGS`` in the sandbox; its output, or :class:`NativePipUnavailable`."""
        (self.archives / "partial").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="manyarch-apt-") as t:
            tmp = Path(t)
            conf = self._config(tmp)
            env = {k: v for k, v in os.environ.items() if k in _PROXIES}
            env.update({k: v for k, v in self.env.items() if k in _PROXIES})
            env.update({"APT_CONFIG": str(conf), "DEBIAN_FRONTEND": "noninteractive"})
            env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
            # the same again on the command line, which apt reads after every file:
            # the image's apt.conf.d cannot point apt elsewhere
            pinned = [
                f"Dir::Bin::dpkg={tmp}/dpkg",
                f"Dir::Cache::archives={self.archives}/",
                f"APT::Architecture={self.arch}",
                "APT::Sandbox::User=root",
                "APT::Immediate-Configure=false",
            ]
            proc = run_host_tool(
                ["apt-get", *(a for o in pinned for a in ("-o", o)), *args],
                env=env,
                readonly=[tmp],
                writable=[self.rootfs, self.archives.parent],
                network=True,
            )
        out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        if proc.returncode != 0:
            errors = [ln for ln in out.splitlines() if ln.startswith("E: ")]
            raise AptFailed(
                f"apt-get {args[0]} failed on the host: " + ("; ".join(errors) or out[-500:]),
                "run with --no-native-apt to see what apt does in the image",
            )
        return out

    def _lists_key(self) -> str:
        """What the lists depend on: the architecture, the sources, the keys apt trusts."""
        h = hashlib.sha256(self.arch.encode())
        for top in ("/etc/apt", "/usr/share/keyrings"):
            base = resolve_in_root(self.rootfs, top)
            if not base.is_dir():
                continue
            for p in sorted(base.rglob("*")):
                if p.is_file() and not p.is_symlink():
                    h.update(f"\0{p.relative_to(base)}\0".encode() + p.read_bytes())
        return h.hexdigest()

    def update(self) -> bool:
        """``apt-get update``, the lists a build with the same sources and keys fetched
        put in first, so apt only fetches what changed since; True when they were."""
        lists = resolve_in_root(self.rootfs, "/var/lib/apt/lists")
        saved = self.archives.parent / "lists" / self._lists_key()
        seeded = False
        if saved.is_dir() and lists.is_dir() and not _has_lists(lists):
            for f in saved.iterdir():
                _unlink_link(lists / f.name)
                shutil.copy2(f, lists / f.name)
                seeded = True
        self.run(["update", "-q"])
        if self.docker_clean:
            docker_clean(self.rootfs)
        if seeded and _stamps(lists) == _stamps(saved):
            return seeded  # apt found nothing new: the saved lists are these
        staged = saved.with_name(f"{saved.name}.{os.getpid()}-{threading.get_ident()}")
        staged.mkdir(parents=True, exist_ok=True)
        for f in lists.iterdir():
            if f.is_file() and not f.is_symlink() and f.name != "lock":
                shutil.copy2(f, staged / f.name)
        shutil.rmtree(saved, ignore_errors=True)
        try:
            os.replace(staged, saved)
        except OSError:  # another build saved the same lists meanwhile
            shutil.rmtree(staged, ignore_errors=True)
        return seeded

    def install(self, cmd: AptCommand) -> list[str]:
        """Resolve, download and unpack natively; returns the .debs apt unpacked."""
        before = _status(self.rootfs)
        args = ["install", "-y", "-q"]
        if cmd.no_recommends:
            args.append("--no-install-recommends")
        if cmd.no_suggests:
            args.append("--no-install-suggests")
        try:
            self.run([*args, *cmd.packages])
        except AptFailed as e:
            if _status(self.rootfs) == before:
                raise  # apt refused before dpkg touched the rootfs: QEMU may run the line
            raise BuildError(f"{e.message} (after dpkg had changed the rootfs)", e.hint) from e
        after = _status(self.rootfs)
        new = sorted(k for k, v in after.items() if before.get(k) != v)
        debs = [f"{p}_{after[(p, a)].replace(':', '%3a')}_{a}.deb" for p, a in new]
        if self.docker_clean:
            docker_clean(self.rootfs)
            return debs
        # as the image's apt would, leave the .debs in its /var/cache/apt/archives
        dest = resolve_in_root(self.rootfs, "/var/cache/apt/archives")
        if dest.is_dir():
            for name in debs:
                if (self.archives / name).is_file():
                    _unlink_link(dest / name)
                    shutil.copyfile(self.archives / name, dest / name)
                    os.utime(self.archives / name)  # for prune's least-recently-used order
        return debs


def _unlink_link(path: Path) -> None:
    """A symlink in the image where a file is written is replaced, never followed."""
    if path.is_symlink():
        path.unlink()


def _stamps(d: Path) -> dict[str, tuple[int, int]]:
    """The list files of ``d``: name -> (size, mtime), as copy2 keeps them."""
    return {
        f.name: (f.stat().st_size, f.stat().st_mtime_ns)
        for f in d.iterdir()
        if f.is_file() and not f.is_symlink() and f.name != "lock"
    }


def _has_lists(lists: Path) -> bool:
    return any(p.is_file() and p.name != "lock" for p in lists.iterdir())


class AptFailed(NativePipUnavailable):
    """The host's apt refused the line: the executor emulates it (the image's apt says why)."""


def clean(rootfs: Path) -> None:
    """``apt-get clean``: the image's downloaded .debs and package caches."""
    cache = resolve_in_root(rootfs, "/var/cache/apt")
    for pattern in ("archives/*.deb", "archives/partial/*", "*.bin"):
        for p in cache.glob(pattern):
            if p.is_file() or p.is_symlink():
                p.unlink()


def remove_lists(rootfs: Path) -> None:
    """``rm -rf /var/lib/apt/lists/*`` (the shell's ``*`` skips dot files)."""
    lists = resolve_in_root(rootfs, "/var/lib/apt/lists")
    if not lists.is_dir():
        return
    for p in lists.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def run_line(
    plan: NativeApt,
    rootfs: Path,
    arch: str,
    cache_dir: Path,
    env: Mapping[str, str],
    log: Callable[[str], None],
) -> int:
    """Do the line's commands in order; returns the number of packages installed."""
    apt = HostApt(rootfs, arch, cache_dir, env)
    count = 0
    for cmd in plan.commands:
        if cmd.action == "update":
            start = time.monotonic()
            seeded = apt.update()
            how = "from the lists of an earlier build" if seeded else "from scratch"
            log(f"native: apt-get update on the host, {how} ({time.monotonic() - start:.1f}s)")
        elif cmd.action == "install":
            start = time.monotonic()
            debs = apt.install(cmd)
            count += len(debs)
            what = f"{len(debs)} package" + ("" if len(debs) == 1 else "s")
            log(
                f"native: apt resolved, fetched and unpacked {what} for {arch} "
                f"on the host ({time.monotonic() - start:.1f}s)"
            )
            start = time.monotonic()
            configure_env = {**env, "DEBIAN_FRONTEND": "noninteractive"}
            install.configure(rootfs, env=configure_env)
            took = time.monotonic() - start
            log(f"emulated (QEMU): maintainer scripts and triggers ({took:.1f}s)")
        elif cmd.action == "clean":
            clean(rootfs)
        elif cmd.action == "rm-lists":
            remove_lists(rootfs)
        else:  # pragma: no cover - command.py makes only these
            raise ManyarchError(f"unknown apt action {cmd.action}")
    return count


def prune_debs(cache_dir: Path, *, keep_bytes: int | None, all: bool) -> int:
    """Trim the .deb cache to ``keep_bytes`` (least recently used first), and with
    ``all`` the saved lists too; bytes of .debs freed."""
    root = deb_cache(cache_dir)
    if all:
        shutil.rmtree(root.parent / "lists", ignore_errors=True)
    if not root.is_dir():
        return 0
    debs = sorted(root.glob("*.deb"), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in debs)
    limit = 0 if all else (keep_bytes if keep_bytes is not None else 2 * 1024**3)
    freed = 0
    for p in debs:
        if total - freed <= limit:
            break
        freed += p.stat().st_size
        p.unlink()
    return freed
