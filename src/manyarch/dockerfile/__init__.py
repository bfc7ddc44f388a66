"""The Dockerfile frontend, pure: :func:`parse` the text, then :func:`plan` a build.

``parse`` checks the syntax (the official Go parser underneath) and groups
instructions by stage; ``plan`` expands variables for one target platform,
keeps the stages the target needs and turns instructions into steps an executor
executes (:class:`RunStep`, :class:`CopyStep`, :class:`ConfigStep`).
:class:`DockerIgnore` reads ``.dockerignore``. Nothing here reads files:
callers pass the text and its file name.
"""

from manyarch.dockerfile.contexts import platform_args
from manyarch.dockerfile.ignore import DockerIgnore
from manyarch.dockerfile.lex import ShellLex, ShellLexError
from manyarch.dockerfile.mounts import Mount
from manyarch.dockerfile.planner import (
    IGNORED_BUILD_ARGS,
    PROXY_BUILD_ARGS,
    BaseConfig,
    plan,
)
from manyarch.dockerfile.steps import (
    DEFAULT_PATH,
    DEFAULT_SHELL,
    BuildPlan,
    ConfigStep,
    CopyStep,
    RunStep,
    Stage,
    Step,
    stage_base_config,
)
from manyarch.dockerfile.syntax import Dockerfile, Heredoc, Instruction, StageSource, parse

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_SHELL",
    "IGNORED_BUILD_ARGS",
    "PROXY_BUILD_ARGS",
    "BaseConfig",
    "BuildPlan",
    "ConfigStep",
    "CopyStep",
    "DockerIgnore",
    "Dockerfile",
    "Heredoc",
    "Instruction",
    "Mount",
    "RunStep",
    "ShellLex",
    "ShellLexError",
    "Stage",
    "StageSource",
    "Step",
    "parse",
    "plan",
    "platform_args",
    "stage_base_config",
]
