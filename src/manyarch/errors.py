"""The one exception tree of manyarch.

Every error a person can act on derives from :class:`ManyarchError` and carries
a ``message`` (what went wrong) and an optional ``hint`` (what to do about it);
the errors that have more context keep it as fields (a failed step's file,
line, platform and exit code; a registry's status and codes), never only in
the message. An error raised because of another one chains it
(``raise ... from e``), so a traceback shows both.

The library never speaks of command lines: the CLI (``manyarch.cli``) catches
only the root, prints ``error: <message>`` and the hint on stderr and exits 1;
it reports :class:`InvalidArgument` (and its own ``cli.common.UsageError``,
raised only there) as a usage error, exit 2. Anything else is a bug and keeps
its traceback.

    ManyarchError
    ├── InvalidInput               a value that does not parse
    │   ├── InvalidArgument        an argument of a call that is wrong, or conflicts
    │   ├── InvalidDigest
    │   ├── InvalidPlatform
    │   ├── InvalidReference
    │   ├── InvalidDocument        malformed manifest, index, config or layout JSON
    │   └── DockerfileError        .file, .line
    ├── DigestMismatch             .expected, .actual: bytes that are not what was promised
    ├── NotFound                   a blob, a manifest, a tag, an image, a container
    │   └── PlatformNotFound       .wanted, .available: an index without the platform
    ├── LayerError                 a layer that cannot be written or unpacked
    │   └── UnsafeLayerEntry       .layer, .entry, .reason: outside the root
    ├── LayoutError                an OCI image layout on disk that is wrong
    ├── DiskFull                   .path: a write found its file system (or quota) full
    ├── RegistryError              .status, .codes, .temporary: the registry said no
    │   ├── AuthError              401/403: credentials missing or refused
    │   └── TransportError         could not talk to the registry at all
    ├── ToolMissing                .tool: mmdebstrap, bwrap, ... is not installed
    ├── SandboxError               a sandboxed process could not start
    │   ├── EmulationError         no binfmt handler for a foreign architecture
    │   ├── LimitsUnavailable      resource limits where no cgroup may be made
    │   └── CommandNotRunnable     .exit_status: docker's 126 (cannot run), 127 (not found)
    └── BuildError                 a build (image or base) failed
        └── StepFailed             .file, .line, .platform, .step, .exit_code, .output
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence


class ManyarchError(Exception):
    """Root of every error a person can act on."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidInput(ManyarchError):
    """A value given to manyarch does not parse."""


class InvalidArgument(InvalidInput):
    """An argument of a call is wrong, or conflicts with another one."""


class InvalidDigest(InvalidInput):
    """A digest string is not ``algorithm:hex`` of a supported algorithm."""


class InvalidPlatform(InvalidInput):
    """A platform string is not ``os/arch[/variant]``."""


class InvalidReference(InvalidInput):
    """An image reference does not parse."""


class InvalidDocument(InvalidInput):
    """A manifest, index, config or layout file is not what the spec says."""


class DockerfileError(InvalidInput):
    """A Dockerfile is wrong; the message names the file and the line."""

    def __init__(
        self, message: str, *, file: str, line: int | None, hint: str | None = None
    ) -> None:
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}", hint)
        self.file = file
        self.line = line


class DigestMismatch(ManyarchError):
    """Content does not hash to the digest (or size) it was announced with."""

    def __init__(
        self,
        expected: str,
        actual: str,
        what: str = "content",
        *,
        message: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message or f"{what} has digest {actual}, expected {expected}",
            hint or "the source is corrupt or was changed while read; nothing was stored",
        )
        self.expected = expected
        self.actual = actual


class NotFound(ManyarchError):
    """A blob, manifest, tag or image does not exist where it was looked for."""


class PlatformNotFound(NotFound):
    """An index has no manifest for the platform asked for."""

    def __init__(self, wanted: str, available: Sequence[str], where: str = "the image") -> None:
        have = ", ".join(available) if available else "none"
        super().__init__(
            f"{where} has no manifest for platform {wanted}",
            f"platforms available: {have}",
        )
        self.wanted = wanted
        self.available = list(available)


class LayerError(ManyarchError):
    """A layer cannot be written or unpacked."""


class UnsafeLayerEntry(LayerError):
    """A tar entry would land (or write) outside the root it is unpacked into."""

    def __init__(self, layer: str, entry: str, reason: str) -> None:
        super().__init__(
            f"layer {layer}: entry {entry!r} {reason}",
            "the layer is hostile or corrupt; nothing was written outside the root",
        )
        self.layer = layer
        self.entry = entry
        self.reason = reason


class LayoutError(ManyarchError):
    """An OCI image layout on disk is missing, malformed or inconsistent."""


class DiskFull(ManyarchError):
    """A write found its file system, or the user's quota, full (ENOSPC, EDQUOT)."""

    def __init__(self, path: str, what: str = "") -> None:
        super().__init__(
            f"{what + ': ' if what else ''}No space left on device ({path})",
            "free some space there (manyarch prune removes unused images, trees and "
            "build caches), then try again; nothing half-written was kept",
        )
        self.path = path

    @classmethod
    def of(cls, e: OSError, what: str = "", path: str | os.PathLike[str] = "") -> DiskFull | None:
        """The error for ``e`` when it is a full disk, else None."""
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            return None
        return cls(os.fspath(e.filename or path or "?"), what)


class RegistryError(ManyarchError):
    """A registry answered with an error.

    ``status`` is the HTTP status (0 when there was no answer), ``codes`` the
    ``errors[].code`` values of the body, ``temporary`` whether a retry may help.
    """

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        status: int = 0,
        codes: Sequence[str] = (),
        temporary: bool = False,
    ) -> None:
        super().__init__(message, hint)
        self.status = status
        self.codes = list(codes)
        self.temporary = temporary


class AuthError(RegistryError):
    """The registry refused the credentials, or wants some."""


class TransportError(RegistryError):
    """The registry could not be reached, or the connection broke."""


class ToolMissing(ManyarchError):
    """An external program manyarch needs is not installed."""

    def __init__(self, tool: str, package: str | None = None) -> None:
        pkg = package or tool
        super().__init__(
            f"{tool} is not installed",
            f"install it: sudo apt-get install {pkg}",
        )
        self.tool = tool


class SandboxError(ManyarchError):
    """A sandboxed process could not be started."""


class EmulationError(SandboxError):
    """No emulation handler is registered for a foreign architecture."""


class LimitsUnavailable(SandboxError):
    """Memory, CPU or process limits asked where this process may not make cgroups."""


class CommandNotRunnable(SandboxError):
    """A command given to a container cannot be run: docker's 126, or 127 when not found."""

    def __init__(self, message: str, exit_status: int, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.exit_status = exit_status


class BuildError(ManyarchError):
    """A build (of an image or of a base) failed."""


class StepFailed(BuildError):
    """A Dockerfile step failed: where (file, line, platform), what, and how.

    ``exit_code`` is the RUN command's status (None when the step failed
    before or without running a command); ``output`` the last lines it wrote.
    The error it failed with, if any, is the ``__cause__``.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str,
        line: int,
        platform: str,
        step: str,
        exit_code: int | None = None,
        output: Sequence[str] = (),
        hint: str | None = None,
    ) -> None:
        # the step in full is the field; the message shows its start (a RUN may be 128 KiB)
        shown = step if len(step) <= 200 else step[:200] + "..."
        super().__init__(f"{file}:{line}: {shown}: {reason}", hint)
        self.reason = reason
        self.file = file
        self.line = line
        self.platform = platform
        self.step = step
        self.exit_code = exit_code
        self.output = tuple(output)
