"""The Dockerfile frontend's subrequests as calls of the session (buildx's ``--call``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manyarch.errors import InvalidArgument, ManyarchError

if TYPE_CHECKING:
    from manyarch.oci.platform import Platform
    from manyarch.registry import RegistryClient
    from manyarch.subrequests.lint import CheckConfig, Warning


@dataclass(frozen=True)
class CheckResult:
    """What ``--check`` found: the rules broken, the Dockerfile they are in."""

    warnings: tuple[Warning, ...]
    config: CheckConfig
    file: str
    text: str

    @property
    def failed(self) -> bool:
        """Warnings with ``# check=error=true``: the build fails."""
        return bool(self.warnings) and self.config.error


def read_dockerfile(context: str | Path, dockerfile: str | Path | None) -> tuple[Path, str]:
    """The Dockerfile's path and text."""
    from manyarch.imagebuild.contextfiles import read_context_text

    path = Path(dockerfile) if dockerfile is not None else Path(context) / "Dockerfile"

    text = read_context_text(Path(context), path, missing_ok=True)
    if text is None:
        raise InvalidArgument(f"cannot read {path}: No such file or directory")
    return path, text


def base_env_from(
    client: RegistryClient | None, platform: Platform
) -> Any:  # a lint.BaseEnv: (ref) -> Env, or None when the image cannot be read
    """A base image's Env for the build checks, read through ``client``."""
    from manyarch.images import open_source, resolve_image
    from manyarch.oci.reference import parse_any

    def env(ref: str) -> Mapping[str, str] | None:
        try:
            parsed = parse_any(ref)
            image = resolve_image(open_source(parsed, client), platform)
        except ManyarchError:
            return None
        return image.config.config.env_dict()

    return env


class FrontendCalls:
    """``check``, ``outline`` and ``targets`` (mixed into :class:`Session`)."""

    @property
    def registry(self) -> RegistryClient:
        """The session's registry client."""
        raise NotImplementedError

    def check(
        self,
        context: str | Path,
        *,
        dockerfile: str | Path | None = None,
        build_args: Mapping[str, str] | None = None,
        platform: str | Platform | None = None,
    ) -> CheckResult:
        """BuildKit's build checks of a Dockerfile (``--check``); base images are read for
        their Env (a base that cannot be read leaves its stage's variables unchecked)."""
        from manyarch.oci.platform import Platform, host_platform
        from manyarch.subrequests.lint import lint

        path, text = read_dockerfile(context, dockerfile)
        plat = Platform.parse(platform) if isinstance(platform, str) else platform
        env = base_env_from(self.registry, plat or host_platform())
        warnings, config = lint(text, file=str(path), build_args=build_args, base_env=env)
        return CheckResult(tuple(warnings), config, str(path), text)

    def outline(
        self,
        context: str | Path,
        *,
        dockerfile: str | Path | None = None,
        target: str | None = None,
    ) -> dict[str, Any]:
        """What the target takes (``--call outline``): build args, secrets, ssh, as BuildKit's
        JSON."""
        from manyarch.subrequests.outline import outline

        path, text = read_dockerfile(context, dockerfile)
        return outline(text, target, file=str(path))

    def targets(
        self, context: str | Path, *, dockerfile: str | Path | None = None
    ) -> dict[str, Any]:
        """The Dockerfile's stages (``--call targets``, BuildKit's JSON)."""
        from manyarch.subrequests.outline import targets

        path, text = read_dockerfile(context, dockerfile)
        return targets(text, file=str(path))
