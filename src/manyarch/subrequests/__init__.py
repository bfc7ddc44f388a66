"""The Dockerfile frontend's subrequests (buildx's ``--call``): build checks, outline, targets.

lint      BuildKit's build checks (``--check``): rule names, words, ``# check=`` directive
outline   ``--call outline`` (build args, secrets, ssh) and ``--call targets``
"""

from manyarch.subrequests.lint import CheckConfig, Warning, lint
from manyarch.subrequests.outline import outline, print_outline, print_targets, targets

__all__ = ["CheckConfig", "Warning", "lint", "outline", "print_outline", "print_targets", "targets"]
