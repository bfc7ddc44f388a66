"""The plan's values: stages and the steps an executor runs, one dataclass per kind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from manyarch.dockerfile.mounts import Mount
from manyarch.oci import ContainerConfig, Platform

#: The PATH BuildKit gives a Linux stage whose base image has none (``system.DefaultPathEnv``).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The shell of shell-form RUN, CMD and ENTRYPOINT when neither SHELL nor the base sets one.
DEFAULT_SHELL = ("/bin/sh", "-c")


def stage_base_config(base: ContainerConfig) -> ContainerConfig:
    """The config a stage starts from: the base image's, with PATH set if it had none
    and no ONBUILD triggers.

    BuildKit adds ``PATH`` to every Linux stage whose base lacks it (scratch too),
    and that PATH ends up in the image; the executor applies this before the steps.
    The base's triggers run first in the stage (the planner puts them there) and
    are not the new image's (BuildKit's testOnBuildCleared).
    """
    if base.on_build:
        base = replace(base, on_build=None)
    if "PATH" in base.env_dict():
        return base
    return base.with_env(PATH=DEFAULT_PATH)


@dataclass(frozen=True)
class RunStep:
    """RUN: execute ``argv`` in the stage's root file system."""

    line: int
    text: str
    argv: tuple[str, ...]
    shell_form: bool
    command_text: str
    env: tuple[tuple[str, str], ...] = ()
    network: str = "default"
    #: a heredoc with a shebang: (name, content), run as ``/dev/pipes/<name>`` (BuildKit)
    files: tuple[tuple[str, str], ...] = ()
    #: ``--mount`` s, defaults applied; a ``from_`` is ``"stage:<i>"`` or an image
    mounts: tuple[Mount, ...] = ()
    #: ``--security=insecure`` (needs ``--allow security.insecure``), else "sandbox"
    security: str = "sandbox"


@dataclass(frozen=True)
class CopyStep:
    """COPY or ADD: sources from the context (or ``from_``) to ``dest`` in the stage.

    ``sources`` are expanded but may hold globs, relative to the context root
    (or the root of ``from_``). ``dest`` is absolute; a trailing ``/`` means a
    directory. ``from_`` is ``"stage:<index>"``, an image reference, or None
    for the build context. With ``extract_tar`` (ADD) a source file that is a
    tar archive (plain, gzip, bzip2, xz or zstd) is unpacked into ``dest``.
    """

    line: int
    text: str
    sources: tuple[str, ...]
    dest: str
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    is_add: bool = False
    extract_tar: bool = False
    #: heredoc sources (``COPY <<EOF /file``): (name, content), expanded as BuildKit does
    inline: tuple[tuple[str, str], ...] = ()
    #: ``ADD --checksum=sha256:...`` of its URL sources
    checksum: str | None = None
    #: ``--exclude`` patterns (relative to each source) and ``--parents``
    excludes: tuple[str, ...] = ()
    parents: bool = False
    #: ``ADD --keep-git-dir`` (a Git source keeps its ``.git``)
    keep_git_dir: bool = False


@dataclass(frozen=True)
class ConfigStep:
    """ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME, CMD, ENTRYPOINT, STOPSIGNAL,
    HEALTHCHECK, SHELL or MAINTAINER: a change to the image configuration.

    Only the fields the instruction sets are used; :meth:`apply` makes the new
    config. ``mkdir`` (WORKDIR) asks the executor to create ``working_dir`` in
    the root file system (owned by the config's user, as BuildKit does).
    ``author`` (MAINTAINER) goes to the image config's ``author``, outside the
    container config.
    """

    line: int
    text: str
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    mkdir: bool = False
    user: str | None = None
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    set_cmd: bool = False
    cmd: tuple[str, ...] | None = None
    set_entrypoint: bool = False
    entrypoint: tuple[str, ...] | None = None
    reset_cmd: bool = False
    stop_signal: str | None = None
    healthcheck: Mapping[str, Any] | None = None
    shell: tuple[str, ...] | None = None
    author: str | None = None
    #: ONBUILD: a trigger the image keeps for the builds FROM it
    on_build: str | None = None

    def apply(self, config: ContainerConfig) -> ContainerConfig:
        """The config after this instruction (``config`` is not changed)."""
        out = config
        if self.env:
            out = out.with_env(**dict(self.env))
        if self.labels:
            out = replace(out, labels={**out.labels, **dict(self.labels)})
        if self.working_dir is not None:
            out = replace(out, working_dir=self.working_dir)
        if self.user is not None:
            out = replace(out, user=self.user)
        if self.exposed_ports:
            out = replace(out, exposed_ports=_union(out.exposed_ports, self.exposed_ports))
        if self.volumes:
            out = replace(out, volumes=_union(out.volumes, self.volumes))
        if self.set_cmd:
            # BuildKit marks every CMD ArgsEscaped, for Docker's (Windows) sake.
            out = replace(out, cmd=self.cmd, args_escaped=True)
        if self.set_entrypoint:
            out = replace(out, entrypoint=self.entrypoint)
            if self.reset_cmd:
                out = replace(out, cmd=None)
        if self.stop_signal is not None:
            out = replace(out, stop_signal=self.stop_signal)
        if self.healthcheck is not None:
            out = replace(out, healthcheck=dict(self.healthcheck))
        if self.shell is not None:
            out = replace(out, shell=self.shell)
        if self.on_build is not None:
            out = replace(out, on_build=(*(out.on_build or ()), self.on_build))
        return out


def _union(have: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(have) | set(more)))


Step = RunStep | CopyStep | ConfigStep


@dataclass(frozen=True)
class Stage:
    """One stage of the plan: its base, its platform and its steps.

    ``base`` is an image reference, ``"scratch"`` or ``"stage:<index>"``
    (another stage of the plan, by its index in the Dockerfile).
    """

    index: int
    name: str | None
    base: str
    platform: Platform
    steps: tuple[Step, ...]
    line: int

    @property
    def base_stage(self) -> int | None:
        """The index of the stage this one is built FROM, if any."""
        return int(self.base[6:]) if self.base.startswith("stage:") else None


@dataclass(frozen=True)
class BuildPlan:
    """The stages a build needs, in dependency order; the last one is the result."""

    stages: tuple[Stage, ...]
    unused_build_args: tuple[str, ...] = ()

    @property
    def result(self) -> Stage:
        """The stage whose image is the build's result."""
        return self.stages[-1]

    def stage(self, index: int) -> Stage:
        """The stage with Dockerfile index ``index``."""
        for st in self.stages:
            if st.index == index:
                return st
        raise KeyError(index)
