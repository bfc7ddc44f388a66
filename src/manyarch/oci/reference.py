"""Image references, parsed like the docker CLI (distribution/reference).

``python:3.12-slim`` is ``docker.io/library/python:3.12-slim``;
``host.docker.internal:5000/fastapi-multiarch:latest`` names a registry on
port 5000; a tag and a digest may stand together (``name:tag@sha256:...``).
An OCI image layout on disk is spelled ``oci-layout://PATH[:TAG|@DIGEST]``, as
buildx does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from manyarch.errors import InvalidInput, InvalidReference
from manyarch.oci.digest import Digest

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
LAYOUT_SCHEME = "oci-layout://"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_NAME = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN = re.compile(rf"^(?:{_DOMAIN_NAME}(?:\.{_DOMAIN_NAME})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_MAX_NAME = 255


@dataclass(frozen=True, order=True)
class Reference:
    """A registry image reference; ``str(r)`` is its full form and parses back to ``r``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse a reference as ``docker pull`` does."""
        if not text:
            raise InvalidReference("empty image reference")
        if text.startswith(LAYOUT_SCHEME):
            raise InvalidReference(
                f"{text!r} names an OCI layout on disk, not a registry image",
                "use a registry reference such as localhost:5000/app:latest",
            )
        if "://" in text:
            raise InvalidReference(
                f"invalid reference {text!r}: a reference has no scheme",
                "write it without http:// or https://, e.g. localhost:5000/app:latest",
            )
        rest = text
        digest: Digest | None = None
        if "@" in rest:
            rest, _, dig = rest.partition("@")
            try:
                digest = Digest.parse(dig)
            except InvalidInput as e:
                raise InvalidReference(f"invalid digest in reference {text!r}: {e}") from e
        tag: str | None = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not _TAG.match(tag):
                raise InvalidReference(
                    f"invalid tag {tag!r} in reference {text!r}",
                    "a tag is up to 128 letters, digits, '_', '.' or '-', "
                    "not starting with '.' or '-'",
                )
        registry, repository = _split_domain(rest, text)
        if len(repository) + len(registry) + 1 > _MAX_NAME:
            raise InvalidReference(f"repository name in {text!r} is longer than 255 characters")
        return cls(registry, repository, tag, digest)

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """The digest if there is one, else the tag (``latest`` when none was given)."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    @property
    def familiar(self) -> str:
        """The short form docker prints (``python:3.12`` rather than ``docker.io/library/...``)."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            short = self.repository.removeprefix("library/")
            first = short.split("/")[0]
            # a first component that looks like a host would be read back as one
            if not ("/" in short and ("." in first or ":" in first or first == "localhost")):
                name = short
        return name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        """The same repository at another tag, no digest."""
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: Digest) -> Reference:
        """The same repository pinned to a digest (the tag kept for reading)."""
        return Reference(self.registry, self.repository, self.tag, digest)

    def tagged_or_latest(self) -> Reference:
        """This reference, with ``latest`` when it names neither tag nor digest."""
        if self.tag is None and self.digest is None:
            return self.with_tag(DEFAULT_TAG)
        return self

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        return out + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()


def _split_domain(name: str, text: str) -> tuple[str, str]:
    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _DOMAIN.match(first):
            raise InvalidReference(f"invalid registry host {first!r} in reference {text!r}")
        registry, path = first, remainder
    else:
        registry, path = DEFAULT_REGISTRY, name
    if registry == "index.docker.io":
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if not path:
        raise InvalidReference(f"invalid reference {text!r}: the repository name is missing")
    if path != path.lower() and _PATH.match(path.lower()):
        raise InvalidReference(
            f"invalid reference {text!r}: repository name must be lowercase",
            f"write {path.lower()!r}",
        )
    if not _PATH.match(path):
        raise InvalidReference(
            f"invalid reference format {text!r}",
            "a repository is lowercase letters, digits and separators ('.', '_', '__', '-'), "
            "in '/'-separated components",
        )
    return registry, path


@dataclass(frozen=True)
class LayoutReference:
    """An image in an OCI image layout directory: ``oci-layout://PATH[:TAG|@DIGEST]``."""

    path: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> LayoutReference:
        """Parse ``oci-layout://PATH[:TAG][@DIGEST]``."""
        if not text.startswith(LAYOUT_SCHEME):
            raise InvalidReference(f"{text!r} is not an oci-layout:// reference")
        rest = text[len(LAYOUT_SCHEME) :]
        digest: Digest | None = None
        if "@" in rest:
            rest, _, dig = rest.rpartition("@")
            digest = Digest.parse(dig)
        tag: str | None = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not tag or not _TAG.match(tag):
                raise InvalidReference(f"invalid tag {tag!r} in {text!r}")
        if not rest:
            raise InvalidReference(f"{text!r} names no directory", "write oci-layout://PATH:TAG")
        return cls(rest, tag, digest)

    @property
    def identifier(self) -> str:
        """The digest if there is one, else the tag (``latest`` when none was given)."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        out = LAYOUT_SCHEME + self.path
        out += f":{self.tag}" if self.tag else ""
        return out + (f"@{self.digest}" if self.digest else "")


AnyReference = Reference | LayoutReference


def parse_any(text: str) -> AnyReference:
    """A registry reference, or an ``oci-layout://`` one."""
    if text.startswith(LAYOUT_SCHEME):
        return LayoutReference.parse(text)
    return Reference.parse(text)
