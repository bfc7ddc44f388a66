"""``.deb`` files and the dpkg database (status, info/*.list|md5sums|conffiles)."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from manyarch.errors import InvalidInput


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
    return dpkg_packages(status.read_text("utf-8", "replace").split("\n\n"))


def dpkg_packages(paragraphs: Iterable[str], *, assume_installed: bool = False) -> list[Package]:
    """The installed packages of dpkg status paragraphs (``Status: ... installed``);
    ``assume_installed`` for paragraphs without a Status (distroless ``status.d/`` files)."""
    out: list[Package] = []
    for para in paragraphs:
        if not para.strip():
            continue
        f = dict(parse_control(para))
        status = f.get("Status", "install ok installed" if assume_installed else "")
        if status.endswith(" installed"):
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


def spdx_supplier(maintainer: str) -> str:
    """A Debian ``Maintainer`` as SPDX's supplier: ``Person: Name (email)``, teams and lists
    as ``Organization``, NOASSERTION when empty."""
    m = re.fullmatch(r"\s*(.*?)\s*<([^>]*)>\s*", maintainer)
    name, email = (m.group(1), m.group(2)) if m else (maintainer.strip(), "")
    if not name:
        return "NOASSERTION"
    kind = "Organization" if re.search(r"team|maintainers|@lists\.", maintainer, re.I) else "Person"
    return f"{kind}: {name} ({email})" if email else f"{kind}: {name}"
