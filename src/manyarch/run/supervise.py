"""The supervisor of a detached container: ``main([DIR, RESULT_FD])`` in a process of its own.

Started by ``manyarch run -d`` in its own session with stdout and stderr on the
container's log; it lives exactly as long as the container. ``--reap DIR FD`` is
the reaper every supervisor starts: it waits for EOF on FD (the supervisor's
death, however it came) and cleans up what the supervisor could not.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path

from manyarch.run.container import ContainerState, reap
from manyarch.run.supervisor import Supervisor


def main(argv: Sequence[str]) -> int:
    """Supervise the container in DIR; write its final state to the fd RESULT_FD if given."""
    args = list(argv)
    if args and args[0] == "--reap":
        with os.fdopen(int(args[2]), "rb") as lifeline:
            lifeline.read()  # EOF: the supervisor is gone, however it ended
        reap(Path(args[1]))
        return 0
    state = ContainerState.load(Path(args[0]))
    sup = Supervisor(state, echo=False, result_fd=int(args[1]) if len(args) > 1 else -1)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: sup.forward(s))
    return sup.run()
