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
cached platform images. The builder touches no output: writing a layout or
pushing is the caller's step, after every platform has succeeded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import ssl
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, cast
from urllib.parse import quote, urlsplit

from manyarch import __version__
from manyarch.imagebuild.bytecode import bytecode_magic, compile_tree, host_python
from manyarch.errors import BuildError, InvalidInput, ManyarchError, ToolMissing, UsageError
from manyarch.layers import write_layer_from_dir
from manyarch.layout import Layout, walk
from manyarch.oci.digest import Digest
from manyarch.oci.document import Document
from manyarch.oci.manifest import (
    ContainerConfig,
    Descriptor,
    History,
    ImageConfig,
    Index,
    Manifest,
)
from manyarch.oci.platform import Platform

log = logging.getLogger("manyarch.base")

DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: Installed in every base: identity files, users, certificates, time zones, /etc/services.
ALWAYS = ("base-files", "base-passwd", "ca-certificates", "netbase", "tzdata")
#: Named package sets; ``python`` gives python3, pip, venv, the ``python`` command, and
#: /bin/sh with coreutils so that ``RUN`` steps written for the official image work.
PRESETS: Mapping[str, tuple[str, ...]] = {
    "minimal": (),
    "python": ("coreutils", "dash", "python-is-python3", "python3", "python3-pip", "python3-venv"),
}
NONROOT_ID = 65532
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
LABEL_PREFIX = "dev.manyarch.base."
#: Bumped whenever what is done to a rootfs changes, so older cache entries are not reused.
RECIPE = 2
MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr/setup00.sh")

# OCI platform (architecture, variant) -> Debian architecture.
_DEB_ARCH: Mapping[tuple[str, str], str] = {
    ("amd64", ""): "amd64",
    ("arm64", ""): "arm64",
    ("arm", "v7"): "armhf",
    ("arm", "v6"): "armel",
    ("arm", "v5"): "armel",
    ("386", ""): "i386",
    ("ppc64le", ""): "ppc64el",
    ("s390x", ""): "s390x",
    ("riscv64", ""): "riscv64",
    ("mips64le", ""): "mips64el",
}
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_SUITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: ``progress(platform, step, seconds)`` after each step of one platform.
Progress = Callable[[Platform, str, float], None]


def debian_arch(platform: Platform) -> str:
    """The Debian architecture that builds for ``platform`` (``linux/arm/v7`` -> ``armhf``)."""
    arch = _DEB_ARCH.get((platform.architecture, platform.variant))
    if platform.os != "linux" or arch is None:
        known = ", ".join(f"linux/{a}/{v}" if v else f"linux/{a}" for a, v in _DEB_ARCH)
        raise InvalidInput(
            f"Debian has no architecture for platform {platform}",
            f"base images can be built for: {known}",
        )
    return arch


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/manyarch/base`` (``~/.cache`` when unset)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg) if xdg else Path.home() / ".cache"
    return root / "manyarch" / "base"


def epoch_rfc3339(epoch: int) -> str:
    """``SOURCE_DATE_EPOCH`` as the RFC 3339 time the OCI spec wants in ``created``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class BaseOptions:
    """Everything a base image is made of; invalid combinations are refused here."""

    platforms: tuple[Platform, ...]
    suite: str = DEFAULT_SUITE
    mirror: str = DEFAULT_MIRROR
    include: tuple[str, ...] = ()
    preset: str = "minimal"
    epoch: int | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    use_cache: bool = True
    #: Seconds allowed for the mirror check (the first request to the mirror).
    mirror_timeout: float = 15.0

    def __post_init__(self) -> None:
        if not self.platforms:
            raise UsageError("no platform given", "say for instance --platform linux/amd64")
        seen: set[str] = set()
        for p in self.platforms:
            arch = debian_arch(p)
            if arch in seen:
                raise UsageError(f"platform {p} is given twice (Debian architecture {arch})")
            seen.add(arch)
        if self.preset not in PRESETS:
            raise UsageError(
                f"unknown preset {self.preset!r}", f"presets: {', '.join(sorted(PRESETS))}"
            )
        if not _SUITE.match(self.suite):
            raise InvalidInput(
                f"invalid suite name {self.suite!r}", "a suite looks like bookworm or trixie"
            )
        for name in self.include:
            if not _PACKAGE.match(name):
                raise InvalidInput(
                    f"invalid Debian package name {name!r}",
                    "package names are lowercase letters, digits, '+', '-' and '.'",
                )
        scheme = urlsplit(self.mirror).scheme
        if scheme not in ("http", "https", "file"):
            raise InvalidInput(
                f"invalid mirror {self.mirror!r}",
                f"a mirror is a URL such as {DEFAULT_MIRROR}",
            )
        if self.epoch is not None and self.epoch < 0:
            raise InvalidInput(
                f"invalid SOURCE_DATE_EPOCH {self.epoch}", "it is seconds since 1970"
            )

    @property
    def packages(self) -> tuple[str, ...]:
        """The packages asked for (their dependencies come along), sorted and unique."""
        return tuple(sorted({*ALWAYS, *PRESETS[self.preset], *self.include}))

    def cache_key(self, platform: Platform) -> str:
        """The cache entry of one platform: a hash of every input that shapes it."""
        inputs = {
            "suite": self.suite,
            "mirror": self.mirror.rstrip("/"),
            "arch": debian_arch(platform),
            "platform": str(platform),
            "packages": list(self.packages),
            "preset": self.preset,
            "epoch": self.epoch,
            "manyarch": __version__,
            "recipe": RECIPE,
        }
        blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


# -- Debian packages -----------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """One installed Debian package, as the image's dpkg status records it."""

    name: str
    version: str
    architecture: str
    source: str = ""
    maintainer: str = ""
    homepage: str = ""

    @property
    def source_name(self) -> str:
        """The source package name (the binary's name when the same)."""
        return self.source.split(" ", 1)[0] if self.source else self.name

    def to_json(self) -> dict[str, str]:
        """As stored in the cache."""
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "source": self.source,
            "maintainer": self.maintainer,
            "homepage": self.homepage,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, str]) -> Package:
        """From :meth:`to_json`."""
        return cls(**{k: str(obj.get(k, "")) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class DebControl:
    """The control data of a .deb: fields in order, md5sums, conffiles and file list."""

    fields: tuple[tuple[str, str], ...]
    md5sums: bytes
    conffiles: tuple[str, ...]
    files: tuple[str, ...]

    def get(self, name: str, default: str = "") -> str:
        """A field's value (continuation lines kept), case-insensitive name."""
        low = name.lower()
        for k, v in self.fields:
            if k.lower() == low:
                return v
        return default

    @property
    def package(self) -> Package:
        """The package this .deb installs."""
        return Package(
            name=self.get("Package"),
            version=self.get("Version"),
            architecture=self.get("Architecture"),
            source=self.get("Source"),
            maintainer=self.get("Maintainer"),
            homepage=self.get("Homepage"),
        )

    @property
    def info_name(self) -> str:
        """The name dpkg gives its info files (``pkg:arch`` for Multi-Arch: same)."""
        if self.get("Multi-Arch") == "same":
            return f"{self.get('Package')}:{self.get('Architecture')}"
        return self.get("Package")


def parse_control(text: str) -> tuple[tuple[str, str], ...]:
    """Parse one deb822 paragraph into ``(field, value)`` pairs, continuations kept."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        if line[0] in " \t":
            if not out:
                raise InvalidInput(f"control data starts with a continuation line: {line!r}")
            k, v = out[-1]
            out[-1] = (k, f"{v}\n{line}")
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise InvalidInput(f"control data has a line without a field name: {line!r}")
        out.append((name.strip(), value.strip()))
    return tuple(out)


def _ar_members(f: IO[bytes]) -> Iterator[tuple[str, int, int]]:
    if f.read(8) != b"!<arch>\n":
        raise InvalidInput("not a Debian package (no ar archive header)")
    while True:
        header = f.read(60)
        if len(header) < 60:
            return
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        offset = f.tell()
        yield name, offset, size
        f.seek(offset + size + (size & 1))


def _open_tar(name: str, data: bytes) -> tarfile.TarFile:
    if name.endswith(".zst"):
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
        return tarfile.open(fileobj=raw, mode="r|")
    if name.endswith(".xz"):
        return tarfile.open(fileobj=io.BytesIO(data), mode="r|xz")
    if name.endswith(".gz"):
        return tarfile.open(fileobj=io.BytesIO(data), mode="r|gz")
    if name.endswith(".bz2"):
        return tarfile.open(fileobj=io.BytesIO(data), mode="r|bz2")
    return tarfile.open(fileobj=io.BytesIO(data), mode="r|")


def _list_path(member_name: str) -> str:
    name = member_name.removeprefix("./").rstrip("/")
    return "/." if name in ("", ".") else "/" + name


def read_deb(path: Path) -> DebControl:
    """Read a .deb's control fields, md5sums, conffiles and the paths it ships."""
    control = ""
    md5sums = b""
    conffiles: tuple[str, ...] = ()
    files: list[str] = []
    with path.open("rb") as f:
        for name, offset, size in list(_ar_members(f)):
            if not name.startswith(("control.tar", "data.tar")):
                continue
            f.seek(offset)
            data = f.read(size)
            with _open_tar(name, data) as tf:
                for m in tf:
                    if name.startswith("data.tar"):
                        files.append(_list_path(m.name))
                        continue
                    base = m.name.removeprefix("./")
                    if base not in ("control", "md5sums", "conffiles") or not m.isfile():
                        continue
                    fo = tf.extractfile(m)
                    content = fo.read() if fo else b""
                    if base == "control":
                        control = content.decode("utf-8", "replace")
                    elif base == "md5sums":
                        md5sums = content
                    else:
                        conffiles = tuple(
                            ln.strip()
                            for ln in content.decode("utf-8", "replace").splitlines()
                            if ln.strip() and not ln.startswith("remove-on-upgrade")
                        )
    if not control:
        raise InvalidInput(f"{path.name} has no control file", "the package is corrupt")
    return DebControl(parse_control(control), md5sums, conffiles, tuple(files))


def _status_paragraph(deb: DebControl, root: Path) -> str:
    lines: list[str] = []
    conff = ""
    if deb.conffiles:
        entries = []
        for c in deb.conffiles:
            p = root / c.lstrip("/")
            digest = (
                hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest()
                if p.is_file() and not p.is_symlink()
                else "newconffile"
            )
            entries.append(f" {c} {digest}")
        conff = "Conffiles:\n" + "\n".join(entries)
    for k, v in deb.fields:
        if k.lower() == "description" and conff:
            lines.append(conff)
            conff = ""
        lines.append(f"{k}: {v}")
        if k.lower() == "package":
            lines.append("Status: install ok installed")
    if conff:
        lines.append(conff)
    return "\n".join(lines) + "\n"


def write_dpkg_database(root: Path, debs: Sequence[DebControl]) -> None:
    """Record ``debs`` as installed in ``root``'s dpkg database (status and info files).

    Paragraphs already in the status file (mmdebstrap's merged-/usr hook installs
    ``usr-is-merged`` with the host's dpkg) are kept unless a .deb replaces them.
    """
    admin = root / "var/lib/dpkg"
    info = admin / "info"
    info.mkdir(parents=True, exist_ok=True)
    paragraphs: dict[tuple[str, str], str] = {}
    status = admin / "status"
    if status.exists():
        for para in status.read_text("utf-8", "replace").split("\n\n"):
            fields = dict(parse_control(para)) if para.strip() else {}
            if "Package" in fields:
                key = (fields["Package"], fields.get("Architecture", ""))
                paragraphs[key] = para.strip("\n") + "\n"
    for deb in debs:
        paragraphs[(deb.get("Package"), deb.get("Architecture"))] = _status_paragraph(deb, root)
        name = deb.info_name
        (info / f"{name}.list").write_text("".join(f"{p}\n" for p in deb.files))
        if deb.md5sums:
            (info / f"{name}.md5sums").write_bytes(deb.md5sums)
        if deb.conffiles:
            (info / f"{name}.conffiles").write_text("".join(f"{c}\n" for c in deb.conffiles))
    text = "\n".join(paragraphs[k] for k in sorted(paragraphs))
    tmp = status.with_name("status.manyarch-tmp")
    tmp.write_text(text)
    tmp.replace(status)
    (admin / "status-old").unlink(missing_ok=True)


def read_dpkg_status(root: Path) -> list[Package]:
    """The installed packages of a rootfs, from ``/var/lib/dpkg/status``."""
    status = root / "var/lib/dpkg/status"
    out: list[Package] = []
    for para in status.read_text("utf-8", "replace").split("\n\n"):
        if not para.strip():
            continue
        f = dict(parse_control(para))
        if f.get("Status", "").endswith(" installed"):
            out.append(
                Package(
                    name=f.get("Package", ""),
                    version=f.get("Version", ""),
                    architecture=f.get("Architecture", ""),
                    source=f.get("Source", ""),
                    maintainer=f.get("Maintainer", ""),
                    homepage=f.get("Homepage", ""),
                )
            )
    return sorted(out, key=lambda p: (p.name, p.architecture))


# -- what the maintainer scripts would have done ---------------------------------


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def _symlink(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def setup_users(root: Path) -> None:
    """``/etc/passwd`` and ``/etc/group`` from base-passwd's masters, plus ``nonroot``.

    base-passwd's postinst copies its masters; the ``nonroot`` user (65532) is the
    one distroless images and Chainguard's have, for ``USER nonroot``.
    """
    master = root / "usr/share/base-passwd"
    passwd = (
        (master / "passwd.master").read_text()
        if (master / "passwd.master").exists()
        else ("root:x:0:0:root:/root:/bin/sh\n")
    )
    group = (
        (master / "group.master").read_text()
        if (master / "group.master").exists()
        else ("root:x:0:\n")
    )
    # The masters give root /bin/bash; without bash a login shell must still exist.
    if not (root / "usr/bin/bash").exists():
        passwd = passwd.replace(":/bin/bash\n", ":/bin/sh\n")
    n = NONROOT_ID
    if not any(line.split(":")[0] == "nonroot" for line in passwd.splitlines()):
        passwd += f"nonroot:x:{n}:{n}:nonroot:/home/nonroot:/sbin/nologin\n"
    if not any(line.split(":")[0] == "nonroot" for line in group.splitlines()):
        group += f"nonroot:x:{n}:\n"
    _write(root / "etc/passwd", passwd)
    _write(root / "etc/group", group)
    home = root / "home/nonroot"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, n, n)
    home.chmod(0o755)


def setup_ca_certificates(root: Path) -> int:
    """The CA bundle and ``/etc/ssl/certs`` links, as ``update-ca-certificates`` makes them.

    Returns the number of certificates in the bundle.
    """
    share = root / "usr/share/ca-certificates"
    if not share.is_dir():
        return 0
    conf = root / "etc/ca-certificates.conf"
    if conf.exists():
        enabled = [
            ln.strip()
            for ln in conf.read_text().splitlines()
            if ln.strip() and not ln.startswith(("#", "!"))
        ]
    else:
        # What the postinst writes on a fresh install: every certificate, sorted.
        enabled = sorted(str(p.relative_to(share)) for p in share.rglob("*.crt"))
        _write(
            conf,
            "# This file lists certificates that you wish to use or to ignore to be\n"
            "# installed in /etc/ssl/certs.\n"
            "# update-ca-certificates(8) will update /etc/ssl/certs by reading this file.\n"
            "#\n"
            "# This is autogenerated by ca-certificates.postinst (here: by manyarch).\n"
            "# Lines starting with # are comments; lines starting with ! deselect.\n"
            + "".join(f"{e}\n" for e in enabled),
        )
    certs = root / "etc/ssl/certs"
    certs.mkdir(parents=True, exist_ok=True)
    bundle: list[bytes] = []
    names: list[str] = []
    for rel in enabled:
        src = share / rel
        if not src.is_file():
            continue
        pem = src.name.removesuffix(".crt") + ".pem"
        _symlink(certs / pem, f"/usr/share/ca-certificates/{rel}")
        data = src.read_bytes()
        bundle.append(data if data.endswith(b"\n") else data + b"\n")
        names.append(pem)
    (certs / "ca-certificates.crt").write_bytes(b"".join(bundle))
    (certs / "ca-certificates.crt").chmod(0o644)
    _hash_links(certs, share, enabled)
    return len(bundle)


def _hash_links(certs: Path, share: Path, enabled: Sequence[str]) -> None:
    # The subject-hash links (``5ad8a5d6.0 -> X.pem``) need OpenSSL's canonical
    # name hash; the host's ``openssl rehash`` computes them in one process over
    # copies, since the image's own links point at absolute in-image paths.
    openssl = shutil.which("openssl")
    if not openssl:
        log.debug("openssl not on the host: no hashed links in /etc/ssl/certs")
        return
    with tempfile.TemporaryDirectory(prefix="manyarch-rehash-") as tmp:
        for rel in enabled:
            src = share / rel
            if src.is_file():
                shutil.copyfile(src, Path(tmp) / (src.name.removesuffix(".crt") + ".pem"))
        proc = subprocess.run([openssl, "rehash", tmp], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            log.debug("openssl rehash failed: %s", proc.stderr.strip())
            return
        for link in sorted(Path(tmp).iterdir()):
            if link.is_symlink():
                _symlink(certs / link.name, os.readlink(link))


def setup_tzdata(root: Path, zone: str = "Etc/UTC") -> None:
    """``/etc/localtime`` and ``/etc/timezone`` as tzdata's postinst sets them (UTC)."""
    if (root / "usr/share/zoneinfo" / zone).exists():
        _symlink(root / "etc/localtime", f"/usr/share/zoneinfo/{zone}")
        _write(root / "etc/timezone", zone + "\n")


def setup_base_files(root: Path) -> None:
    """What base-files' postinst creates: ``/usr/local`` dirs, ``/etc/profile``, root's dotfiles."""
    for d in ("bin", "etc", "games", "include", "lib", "man", "sbin", "share", "src"):
        (root / "usr/local" / d).mkdir(parents=True, exist_ok=True)
    share = root / "usr/share/base-files"
    for src, dest in (
        ("profile", "etc/profile"),
        ("dot.profile", "root/.profile"),
        ("dot.bashrc", "root/.bashrc"),
    ):
        if (share / src).is_file() and not (root / dest).exists():
            (root / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(share / src, root / dest)


def setup_python(root: Path) -> list[str]:
    """Remove PEP 668's marker, as the official ``python`` image has none.

    ``pip install`` as root then installs into ``/usr/local/lib/python3.X/dist-packages``
    (Debian's posix_local scheme), which is first on ``sys.path``; Debian's own
    modules stay in ``/usr/lib/python3``. Returns the markers removed.
    """
    removed = []
    for marker in sorted((root / "usr/lib").glob("python3.*/EXTERNALLY-MANAGED")):
        marker.unlink()
        removed.append("/" + str(marker.relative_to(root)))
    return removed


def compile_python(root: Path) -> list[str]:
    """Byte-compile the image's Python modules, as python3's postinst (py3compile) would.

    Bytecode does not depend on the CPU, so a host interpreter with the same
    bytecode magic number compiles for every architecture, without emulation;
    without one, nothing is compiled (Python then compiles at first import).
    Hash-checked pycs (PEP 552) stay valid when the layer clamps mtimes, and a
    fixed hash seed in a process per rootfs keeps them reproducible. Returns the
    library directories compiled.
    """
    done = []
    for lib in sorted((root / "usr/lib").glob("python3.*")):
        magic = bytecode_magic(lib)
        if magic is None:
            continue
        interp = host_python(lib.name, magic)
        if interp is None:
            log.info("no host %s with bytecode magic %d: modules left uncompiled", lib.name, magic)
            continue
        dirs = [lib]
        if (root / "usr/lib/python3/dist-packages").is_dir():
            dirs.append(root / "usr/lib/python3/dist-packages")
        proc = compile_tree(interp, root, dirs)
        if proc.returncode != 0:
            # A few files (test data written for other Python versions) never compile.
            log.debug("compileall %s: %s", lib.name, proc.stdout.strip()[-2000:])
        done.append("/" + str(lib.relative_to(root)))
    return done


def clean_rootfs(root: Path, installed: set[str]) -> None:
    """Remove what is host-specific or only useful while bootstrapping."""
    # mmdebstrap copies the host's resolv.conf and hostname; runtimes provide both.
    for rel in ("etc/resolv.conf", "etc/hostname", "var/lib/dpkg/status-old"):
        p = root / rel
        if p.is_symlink() or p.exists():
            p.unlink()
    archives = root / "var/cache/apt/archives"
    if archives.is_dir():
        for deb in archives.glob("*.deb"):
            deb.unlink()
    for pkgcache in (root / "var/cache/apt").glob("*.bin"):
        pkgcache.unlink()
    lists = root / "var/lib/apt/lists"
    if lists.is_dir():
        for entry in lists.iterdir():
            if entry.is_file():
                entry.unlink()
    if "apt" not in installed:
        # Without apt its configuration is noise (and names the build mirror).
        for rel in ("etc/apt", "var/lib/apt", "var/cache/apt", "var/log/apt"):
            shutil.rmtree(root / rel, ignore_errors=True)


@dataclass(frozen=True)
class RootfsInfo:
    """What a prepared rootfs holds."""

    packages: tuple[Package, ...]
    os_release: Mapping[str, str]
    certificates: int

    @property
    def python_version(self) -> str:
        """The upstream Python version (``3.11.2``), or ``""`` without python3."""
        for p in self.packages:
            if re.fullmatch(r"python3\.\d+", p.name):
                return p.version.split("-", 1)[0].split(":")[-1]
        return ""


def os_release(root: Path) -> dict[str, str]:
    """``/etc/os-release`` (or ``/usr/lib/os-release``) as a mapping."""
    for rel in ("etc/os-release", "usr/lib/os-release"):
        p = root / rel
        if p.exists():
            out = {}
            for line in p.read_text().splitlines():
                k, sep, v = line.partition("=")
                if sep and k.strip() and not k.startswith("#"):
                    out[k.strip()] = v.strip().strip('"')
            return out
    return {}


def finish_rootfs(root: Path, preset: str) -> RootfsInfo:
    """Do on the host what the unpacked packages' maintainer scripts would have done."""
    archives = root / "var/cache/apt/archives"
    debs = [read_deb(p) for p in sorted(archives.glob("*.deb"))] if archives.is_dir() else []
    if not debs:
        raise BuildError(f"no packages were unpacked into {root}")
    write_dpkg_database(root, debs)
    installed = {d.get("Package") for d in debs}
    setup_users(root)
    count = setup_ca_certificates(root)
    setup_tzdata(root)
    setup_base_files(root)
    if preset == "python":
        setup_python(root)
    compile_python(root)
    clean_rootfs(root, installed)
    return RootfsInfo(tuple(read_dpkg_status(root)), os_release(root), count)


# -- mmdebstrap ----------------------------------------------------------------------


def mmdebstrap_path() -> str:
    """The mmdebstrap program, or :class:`ToolMissing` naming the package."""
    path = shutil.which("mmdebstrap")
    if not path:
        raise ToolMissing("mmdebstrap")
    return path


def _is_snapshot(mirror: str) -> bool:
    return (urlsplit(mirror).hostname or "").startswith("snapshot.")


def mmdebstrap_command(opts: BaseOptions, platform: Platform, target: Path) -> list[str]:
    """The mmdebstrap command line that unpacks ``platform``'s packages into ``target``."""
    cmd = [
        mmdebstrap_path(),
        "--mode=root",
        "--variant=extract",
        f"--arch={debian_arch(platform)}",
        f"--include={','.join(opts.packages)}",
        # The .debs stay in /var/cache/apt/archives: their control data is
        # what the dpkg database is written from (then they are removed).
        "--skip=cleanup/apt/cache",
        '--aptopt=Acquire::Retries "2"',
    ]
    if MERGED_USR_HOOK.exists():
        # Bookworm's packages still ship /bin, /lib...; merged-/usr like every Debian image.
        cmd.append(f"--setup-hook={MERGED_USR_HOOK}")
    if _is_snapshot(opts.mirror):
        # snapshot.debian.org serves Release files whose Valid-Until has passed.
        cmd += [
            '--aptopt=Acquire::Check-Valid-Until "false"',
            '--aptopt=Apt::Key::gpgvcommand "/usr/libexec/mmdebstrap/gpgvnoexpkeysig"',
        ]
    return [*cmd, opts.suite, str(target), opts.mirror]


def _mmdebstrap_error(opts: BaseOptions, platform: Platform, stderr: str) -> ManyarchError:
    errors = [ln[3:].strip() for ln in stderr.splitlines() if ln.startswith("E: ")]
    text = "\n".join(errors) or stderr.strip()
    where = f"{opts.suite} ({debian_arch(platform)}) on {opts.mirror}"
    missing = re.findall(
        r"Unable to locate package (\S+)|Package '?([^' ]+)'? has no installation candidate",
        text,
    )
    if missing:
        names = sorted({a or b for a, b in missing})
        return BuildError(
            f"package {', '.join(names)} not found in {where}",
            f"check the name on https://packages.debian.org/{opts.suite}/ "
            "or remove it from --include",
        )
    if "does not have a Release file" in text:
        return BuildError(
            f"suite {opts.suite!r} not found on {opts.mirror}",
            "use a Debian suite the mirror has, such as bookworm, trixie or sid (--suite)",
        )
    if re.search(
        r"Could not connect|Failed to fetch|Temporary failure resolving|"
        r"index files failed to download|Connection failed",
        text,
    ):
        return BuildError(
            f"cannot download from mirror {opts.mirror}",
            f"check the URL and the network, or pass another --mirror (default {DEFAULT_MIRROR})",
        )
    tail = "\n".join(stderr.strip().splitlines()[-8:])
    return BuildError(
        f"mmdebstrap failed for {platform}:\n{tail}",
        "run the command again with --debug to see the whole mmdebstrap output",
    )


def check_mirror(opts: BaseOptions) -> None:
    """Check, with one request, that the mirror answers and has the suite and architectures.

    Catches an unreachable mirror or an unknown suite before anything is
    started or written; ``file:`` mirrors are left to apt.
    """
    if urlsplit(opts.mirror).scheme not in ("http", "https"):
        return
    import httpx

    url = f"{opts.mirror.rstrip('/')}/dists/{opts.suite}/Release"
    try:
        with httpx.Client(
            timeout=opts.mirror_timeout,
            follow_redirects=True,
            verify=ssl.create_default_context(),
        ) as client:
            resp = client.get(url)
    except httpx.HTTPError as e:
        raise BuildError(
            f"cannot reach mirror {opts.mirror}: {e}",
            f"check the URL and the network, or pass another --mirror (default {DEFAULT_MIRROR})",
        ) from None
    if resp.status_code == 404:
        raise BuildError(
            f"suite {opts.suite!r} not found on {opts.mirror} ({url}: 404)",
            "use a Debian suite the mirror has, such as bookworm, trixie or sid (--suite)",
        )
    if resp.status_code >= 400:
        raise BuildError(
            f"mirror {opts.mirror} answered {resp.status_code} for {url}",
            "check the --mirror URL: it is the directory that holds dists/ and pool/",
        )
    fields = dict(parse_control(resp.text))
    arches = fields.get("Architectures", "").split()
    if arches:
        for p in opts.platforms:
            if debian_arch(p) not in arches:
                raise BuildError(
                    f"{opts.suite} on {opts.mirror} has no {debian_arch(p)} packages "
                    f"(platform {p})",
                    f"architectures there: {', '.join(arches)}",
                )


def prepare_rootfs(opts: BaseOptions, platform: Platform, target: Path) -> RootfsInfo:
    """Unpack ``platform``'s packages into the empty directory ``target`` and finish it."""
    cmd = mmdebstrap_command(opts, platform, target)
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    if opts.epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(opts.epoch)
    log.debug("%s: %s", platform, " ".join(cmd))
    proc = subprocess.run(
        cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        log.debug("mmdebstrap stderr:\n%s", proc.stderr)
        raise _mmdebstrap_error(opts, platform, proc.stderr)
    return finish_rootfs(target, opts.preset)


def require_root() -> None:
    """mmdebstrap's root mode writes the rootfs with real ownership: it needs root."""
    if os.geteuid() != 0:
        raise BuildError(
            "manyarch base needs root: the rootfs keeps root-owned files as they are",
            "run it with sudo",
        )


@contextlib.contextmanager
def _scratch(parent: Path, prefix: str) -> Iterator[Path]:
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _timed(progress: Progress | None, platform: Platform, step: str, start: float) -> float:
    now = time.monotonic()
    log.info("%s: %s (%.1fs)", platform, step, now - start)
    if progress is not None:
        progress(platform, step, now - start)
    return now


# -- images --------------------------------------------------------------------------

ENTRY_TAG = "image"
ENTRY_META = "base.json"


@dataclass(frozen=True)
class PlatformImage:
    """One platform's base image, stored in its cache entry (an OCI layout)."""

    platform: Platform
    key: str
    layout_path: Path
    manifest: Descriptor
    packages: tuple[Package, ...]
    os_release: Mapping[str, str]
    cached: bool

    def layout(self) -> Layout:
        """The cache entry's layout."""
        return Layout.open(self.layout_path)


@dataclass(frozen=True)
class BaseImage:
    """A multi-platform base: one image per platform, in the order asked for."""

    options: BaseOptions
    images: tuple[PlatformImage, ...]

    @property
    def index(self) -> Index:
        """The image index over the platform manifests."""
        return Index(manifests=tuple(i.manifest for i in self.images))

    def index_document(self) -> Document:
        """The index's bytes (its digest is the image's digest)."""
        return self.index.to_document()

    @property
    def digest(self) -> Digest:
        """The index digest."""
        return self.index_document().digest


def image_config(
    opts: BaseOptions, platform: Platform, info: RootfsInfo, diff_id: Digest, has_shell: bool
) -> ImageConfig:
    """The config of one platform's base image."""
    created = epoch_rfc3339(opts.epoch) if opts.epoch is not None else None
    env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "SSL_CERT_FILE": CA_BUNDLE}
    cmd: tuple[str, ...] | None = ("/bin/sh",) if has_shell else None
    if opts.preset == "python" and info.python_version:
        env["PYTHON_VERSION"] = info.python_version
        cmd = ("python3",)
    labels = {
        LABEL_PREFIX + "suite": opts.suite,
        LABEL_PREFIX + "mirror": opts.mirror,
        LABEL_PREFIX + "preset": opts.preset,
        LABEL_PREFIX + "packages": ",".join(opts.packages),
    }
    if info.os_release.get("PRETTY_NAME"):
        labels[LABEL_PREFIX + "os"] = info.os_release["PRETTY_NAME"]
    argv = f"manyarch base --suite {opts.suite} --preset {opts.preset}"
    if opts.include:
        argv += f" --include {','.join(sorted(opts.include))}"
    history = History(
        created=created,
        created_by=argv,
        comment=f"{len(info.packages)} Debian packages from {opts.mirror}",
    )
    return ImageConfig(
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        created=created,
        config=ContainerConfig(
            env=tuple(f"{k}={v}" for k, v in env.items()),
            cmd=cmd,
            labels=labels,
        ),
        diff_ids=(diff_id,),
        history=(history,),
    )


def _load_entry(opts: BaseOptions, platform: Platform, path: Path) -> PlatformImage | None:
    meta = path / ENTRY_META
    if not meta.is_file():
        return None
    try:
        layout = Layout.open(path)
        desc = layout.resolve(ENTRY_TAG)
        manifest = Manifest.parse(layout.read_document(desc))
        for d in (manifest.config, *manifest.layers):
            if not layout.has_blob(d.digest):
                return None
        obj = json.loads(meta.read_text())
    except (ManyarchError, OSError, ValueError):
        log.debug("cache entry %s is unusable; rebuilding", path)
        return None
    return PlatformImage(
        platform=platform,
        key=path.name,
        layout_path=path,
        manifest=desc.with_platform(platform),
        packages=tuple(Package.from_json(p) for p in obj.get("packages", ())),
        os_release=dict(obj.get("os_release", {})),
        cached=True,
    )


@contextlib.contextmanager
def _entry_lock(cache_dir: Path, key: str) -> Iterator[None]:
    # Two builds of the same inputs (two terminals, two pytest sessions) wait
    # for each other instead of unpacking the same packages twice.
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".{key}.lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_platform(
    opts: BaseOptions, platform: Platform, progress: Progress | None = None
) -> PlatformImage:
    """One platform's image: from the cache when there, else built into it."""
    key = opts.cache_key(platform)
    entry = opts.cache_dir / key
    start = time.monotonic()
    with _entry_lock(opts.cache_dir, key):
        if opts.use_cache:
            found = _load_entry(opts, platform, entry)
            if found is not None:
                _timed(progress, platform, "cached", start)
                return found
        with _scratch(opts.cache_dir, f".work-{debian_arch(platform)}-") as work:
            rootfs = work / "rootfs"
            rootfs.mkdir()
            info = prepare_rootfs(opts, platform, rootfs)
            t = _timed(progress, platform, f"{len(info.packages)} packages unpacked", start)
            staged = work / "entry"
            desc, size = _store_image(opts, platform, rootfs, info, staged)
            shutil.rmtree(rootfs)
            _timed(progress, platform, f"layer {size / 1e6:.1f} MB", t)
            # The entry appears whole or not at all: a rename within the cache directory.
            if entry.exists():
                os.replace(entry, work / "replaced")
            os.replace(staged, entry)
    return PlatformImage(
        platform=platform,
        key=key,
        layout_path=entry,
        manifest=desc.with_platform(platform),
        packages=info.packages,
        os_release=info.os_release,
        cached=False,
    )


def _store_image(
    opts: BaseOptions, platform: Platform, rootfs: Path, info: RootfsInfo, dest: Path
) -> tuple[Descriptor, int]:
    layout = Layout.open(dest, create=True)
    with layout.writer() as w:
        layer = write_layer_from_dir(
            rootfs, cast(BinaryIO, w), compression="gzip", epoch=opts.epoch
        )
        w.commit(layer.digest)
    has_shell = (rootfs / "usr/bin/sh").exists() or (rootfs / "bin/sh").exists()
    config = image_config(opts, platform, info, layer.diff_id, has_shell)
    config_desc = layout.put_document(config.to_document())
    manifest = Manifest(config=config_desc, layers=(layer.descriptor(),))
    desc = layout.put_document(manifest.to_document())
    layout.tag(ENTRY_TAG, desc)
    meta = {
        "platform": str(platform),
        "suite": opts.suite,
        "mirror": opts.mirror,
        "packages": [p.to_json() for p in info.packages],
        "os_release": dict(info.os_release),
    }
    (dest / ENTRY_META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return desc, layer.size


def build_base(opts: BaseOptions, progress: Progress | None = None) -> BaseImage:
    """Build (or take from the cache) every platform's image, in parallel.

    Nothing outside the cache is written; a failed platform leaves no cache
    entry. The first error is raised once every platform has finished.
    """
    pending = [
        p
        for p in opts.platforms
        if not (opts.use_cache and _load_entry(opts, p, opts.cache_dir / opts.cache_key(p)))
    ]
    if pending:
        mmdebstrap_path()
        require_root()
        check_mirror(opts)
    with ThreadPoolExecutor(max_workers=len(opts.platforms)) as pool:
        futures = [pool.submit(build_platform, opts, p, progress) for p in opts.platforms]
        errors = [f.exception() for f in futures]
    for e in errors:
        if e is not None:
            raise e
    return BaseImage(opts, tuple(f.result() for f in futures))


def save_layout(image: BaseImage, dest: Layout, tag: str | None) -> Descriptor:
    """Copy the image into ``dest`` (blobs, manifests, then the index) and tag it last."""
    for img in image.images:
        src = img.layout()
        for d in walk(src, img.manifest, children_first=True):
            if dest.has_blob(d.digest):
                continue
            with src.open_blob(d.digest) as f:
                dest.put_stream(f, d.digest, d.size)
    desc = dest.put_document(image.index_document())
    if tag:
        dest.tag(tag, desc)
    return desc


# -- SBOM -------------------------------------------------------------------------


def _purl(p: Package, distro: str) -> str:
    version = quote(p.version, safe="")
    out = f"pkg:deb/debian/{quote(p.name, safe='')}@{version}?arch={p.architecture}"
    if p.source and p.source_name != p.name:
        out += f"&upstream={quote(p.source_name, safe='')}"
    return out + (f"&distro={distro}" if distro else "")


def _spdx_supplier(maintainer: str) -> str:
    # SPDX writes "Name (email)"; Debian's teams and lists are organisations.
    m = re.fullmatch(r"\s*(.*?)\s*<([^>]*)>\s*", maintainer)
    name, email = (m.group(1), m.group(2)) if m else (maintainer.strip(), "")
    if not name:
        return "NOASSERTION"
    kind = "Organization" if re.search(r"team|maintainers|@lists\.", maintainer, re.I) else "Person"
    return f"{kind}: {name} ({email})" if email else f"{kind}: {name}"


def spdx_document(image: BaseImage, name: str, created: str | None = None) -> dict[str, Any]:
    """The installed packages of every platform as an SPDX 2.3 JSON document."""
    opts = image.options
    when = created or (
        epoch_rfc3339(opts.epoch)
        if opts.epoch is not None
        else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    packages: dict[tuple[str, str, str], dict[str, Any]] = {}
    for img in image.images:
        rel = img.os_release
        distro = f"{rel.get('ID', 'debian')}-{rel['VERSION_ID']}" if rel.get("VERSION_ID") else ""
        for p in img.packages:
            k = (p.name, p.version, p.architecture)
            if k in packages:
                continue
            spdx_id = "SPDXRef-Package-deb-" + re.sub(
                r"[^A-Za-z0-9.-]", "-", f"{p.name}-{p.version}-{p.architecture}"
            )
            entry: dict[str, Any] = {
                "SPDXID": spdx_id,
                "name": p.name,
                "versionInfo": p.version,
                "supplier": _spdx_supplier(p.maintainer),
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "NOASSERTION",
                "copyrightText": "NOASSERTION",
                "sourceInfo": f"built from Debian source package {p.source_name}",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": _purl(p, distro),
                    }
                ],
            }
            if p.homepage:
                entry["homepage"] = p.homepage
            packages[k] = entry
    ordered = [packages[k] for k in sorted(packages)]
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"https://manyarch.dev/spdx/base/{image.digest.hex}",
        "creationInfo": {"created": when, "creators": [f"Tool: manyarch-{__version__}"]},
        "packages": ordered,
        "relationships": [
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": p["SPDXID"],
            }
            for p in ordered
        ],
    }
