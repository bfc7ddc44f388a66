"""docker's flags that manyarch does not take: refused by name, never ignored.

Each command's parser gets these flags with an action that raises a usage
error naming the flag and why (argparse alone would blame the next word, or
swallow a value). ``docs/run.md`` lists every docker flag of run, ps, logs and
images with its status; a test keeps this table and that page in step.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from manyarch.cli.common import UsageError

_ISOLATION = "every container has its own namespaces (see docs/security.md)"
_CGROUP = "manyarch sets only --memory, --cpus and --pids-limit"
_NO_DAEMON = "there is no daemon to keep it"

#: command -> (flag names, takes a value, why it is refused)
REFUSED: dict[str, list[tuple[tuple[str, ...], bool, str]]] = {
    "run": [
        (("-a", "--attach"), True, "the output of a foreground container is always attached"),
        (("--annotation",), True, "containers carry no OCI annotations here"),
        (("--blkio-weight",), True, _CGROUP),
        (("--blkio-weight-device",), True, _CGROUP),
        (("--cgroup-parent",), True, "the cgroup is made below manyarch's own"),
        (("--cgroupns",), True, _ISOLATION),
        (("--cpu-count",), True, "a Windows option"),
        (("--cpu-percent",), True, "a Windows option"),
        (("--cpu-period",), True, "use --cpus"),
        (("--cpu-quota",), True, "use --cpus"),
        (("--cpu-rt-period",), True, _CGROUP),
        (("--cpu-rt-runtime",), True, _CGROUP),
        (("-c", "--cpu-shares"), True, _CGROUP),
        (("--cpuset-cpus",), True, _CGROUP),
        (("--cpuset-mems",), True, _CGROUP),
        (("--detach-keys",), True, "there is no attach to detach from"),
        (("--device",), True, _ISOLATION),
        (("--device-cgroup-rule",), True, _ISOLATION),
        (("--device-read-bps",), True, _CGROUP),
        (("--device-read-iops",), True, _CGROUP),
        (("--device-write-bps",), True, _CGROUP),
        (("--device-write-iops",), True, _CGROUP),
        (("--disable-content-trust",), False, "manyarch does not verify Notary signatures"),
        (("--dns",), True, "the container reads the host's /etc/resolv.conf"),
        (("--dns-option",), True, "the container reads the host's /etc/resolv.conf"),
        (("--dns-search",), True, "the container reads the host's /etc/resolv.conf"),
        (("--domainname",), True, "give a full name with --hostname"),
        (("--gpus",), True, "no device is passed to containers"),
        (("--group-add",), True, "the user's groups come from the image's /etc/group"),
        (("--io-maxbandwidth",), True, "a Windows option"),
        (("--io-maxiops",), True, "a Windows option"),
        (("--ip",), True, _ISOLATION),
        (("--ip6",), True, _ISOLATION),
        (("--ipc",), True, _ISOLATION),
        (("--isolation",), True, "a Windows option"),
        (("--kernel-memory",), True, "removed from docker too"),
        (("--link",), True, "a legacy docker network feature"),
        (("--link-local-ip",), True, _ISOLATION),
        (("--log-driver",), True, "logs are kept as docker's json-file driver keeps them"),
        (("--log-opt",), True, "logs are kept as docker's json-file driver keeps them"),
        (("--mac-address",), True, _ISOLATION),
        (("--memory-reservation",), True, _CGROUP),
        (("--memory-swap",), True, _CGROUP),
        (("--memory-swappiness",), True, _CGROUP),
        (("--network-alias", "--net-alias"), True, _ISOLATION),
        (("--oom-kill-disable",), False, _CGROUP),
        (("--oom-score-adj",), True, "not set for containers"),
        (("--pid",), True, _ISOLATION),
        (("--runtime",), True, "the runtime is bubblewrap"),
        (("--shm-size",), True, "/dev/shm is bubblewrap's"),
        (("--sig-proxy",), True, "signals to `manyarch run` always go to the container"),
        (("--storage-opt",), True, "the container's layer is an overlay in manyarch's data dir"),
        (("--sysctl",), True, _ISOLATION),
        (("--ulimit",), True, "limits are inherited from manyarch's own"),
        (("--use-api-socket",), False, _NO_DAEMON),
        (("--userns",), True, _ISOLATION),
        (("--uts",), True, _ISOLATION),
        (("--volume-driver",), True, "volumes are directories in manyarch's data dir"),
        (("--volumes-from",), True, "give the volumes by name with -v NAME:/path"),
    ],
    "ps": [],
    "logs": [
        (("--details",), False, "containers carry no log attributes (--log-opt)"),
    ],
    "images": [
        (("--tree",), False, "each platform is listed on its own row already"),
    ],
}


class _Refuse(argparse.Action):
    """Raises a usage error naming the flag as soon as argparse meets it."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        self.why = kwargs.pop("why")
        self.command = kwargs.pop("command")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: str | None = None) -> None:
        error = UsageError(
            f"manyarch {self.command} does not support {option or self.option_strings[0]}: "
            f"{self.why}",
            f"see 'manyarch {self.command} --help' for the flags it takes",
        )
        if self.command == "run":
            error.exit_status = 125  # docker run's status for its own errors
        raise error


def add_refused(parser: argparse.ArgumentParser, command: str) -> None:
    """Add ``command``'s refused docker flags to ``parser`` (hidden from its help)."""
    for names, takes_value, why in REFUSED.get(command, []):
        parser.add_argument(
            *names,
            action=_Refuse,
            nargs=1 if takes_value else 0,
            help=argparse.SUPPRESS,
            dest=f"refused_{names[-1].lstrip('-').replace('-', '_')}",
            default=None,
            why=why,
            command=command,
        )
