"""Containers and images as docker describes them: ``ps``/``images`` rows, ``inspect`` JSON,
and their ``--filter`` rules.

The rows carry docker's ``--format`` field names (``.ID``, ``.Names``,
``.Status``, ``.Repository`` ...); ``inspect`` gives the fields scripts read
(``.Id``, ``.State.Status``, ``.State.ExitCode``, ``.Config``,
``.NetworkSettings.Ports``, ``.HostConfig``, ``.Mounts``; for an image
``.RepoTags``, ``.Architecture``, ``.RootFS``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from manyarch.errors import InvalidArgument
from manyarch.run import health
from manyarch.run.container import ContainerState, is_running, parse_time
from manyarch.units import human_duration, human_size, parse_rfc3339

if TYPE_CHECKING:
    from manyarch.run.local import LocalImage

#: ``table`` headers of ps's fields (docker's formatter names)
PS_HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Platform": "PLATFORM",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
}
IMAGE_HEADERS = {
    "ID": "IMAGE ID",
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "Platform": "PLATFORM",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "Containers": "CONTAINERS",
}


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """How long ago, worded as docker words it."""
    if when is None:
        return "?"
    return human_duration(((now or datetime.now(UTC)) - when).total_seconds())


def health_status(state: ContainerState) -> str | None:
    """``starting``, ``healthy`` or ``unhealthy``; None without a health check."""
    if state.healthcheck is None or not is_running(state):
        return None
    status = health.read_status(state.directory)
    return str(status["Status"]) if status else "starting"


def status_of(s: ContainerState) -> str:
    """docker's STATUS column."""
    if s.status == "running":
        h = health_status(s)
        suffix = f" ({'health: starting' if h == 'starting' else h})" if h else ""
        return f"Up {ago(parse_time(s.started))}{suffix}"
    if s.status == "restarting":
        return f"Restarting ({s.exit_code}) {ago(parse_time(s.finished or s.started))} ago"
    if s.status == "exited":
        return f"Exited ({s.exit_code}) {ago(parse_time(s.finished))} ago"
    return "Created"


def _docker_time(text: str) -> str:
    when = parse_time(text)
    return when.strftime("%Y-%m-%d %H:%M:%S +0000 UTC") if when else ""


def _size_of(state: ContainerState) -> int:
    total = 0
    upper = state.directory / "upper"
    for p in upper.rglob("*") if upper.is_dir() else ():
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            pass
    return total


class _Labels(dict[str, str]):
    """``.Labels`` prints as docker's ``k=v,k2=v2``; ``.Label "k"`` gives one."""

    def __str__(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.items()))


def ps_row(
    s: ContainerState, *, no_trunc: bool = False, size: bool = False, image_size: int = 0
) -> dict[str, Any]:
    """A ``ps`` row with docker's field names."""
    cmd = " ".join(s.argv)
    if not no_trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    labels = _Labels(s.labels)
    row: dict[str, Any] = {
        "ID": s.id if no_trunc else s.id[:12],
        "Image": s.image,
        "Platform": s.platform,
        "Command": f'"{cmd}"',
        "CreatedAt": _docker_time(s.created),
        "RunningFor": f"{ago(parse_time(s.created))} ago",
        "Ports": ", ".join(str(p) for p in s.port_mappings),
        "State": s.status,
        "Status": status_of(s),
        "Names": s.name,
        "Labels": labels,
        "Label": lambda key: labels.get(key, ""),
        "Mounts": ",".join(m.source if m.type != "tmpfs" else m.target for m in s.mount_list),
        "Networks": "pasta" if s.ports else "host",
        "Size": "",
    }
    if size:
        own = _size_of(s)
        row["Size"] = f"{human_size(own)} (virtual {human_size(own + image_size)})"
    return row


def _filters(filters: Sequence[str], known: set[str], command: str) -> dict[str, list[str]]:
    """``--filter key=value`` flags by key; unknown keys refused."""
    by_key: dict[str, list[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep:
            raise InvalidArgument(f"bad format of filter (expected name=value): {f}")
        key = key.strip().lower()
        if key not in known:
            raise InvalidArgument(
                f"invalid filter '{key}'",
                f"manyarch {command} filters on: {', '.join(sorted(known))}",
            )
        by_key.setdefault(key, []).append(value)
    return by_key


def _bool_filter(value: str) -> bool:
    return value.lower() in ("1", "true")


def ps_filter(filters: Sequence[str]) -> Callable[[ContainerState], bool]:
    """docker ps ``--filter key=value`` (same key: any matches; keys: all must)."""
    known = {"id", "name", "label", "status", "exited", "ancestor", "health", "before", "since"}
    by_key = _filters(filters, known, "ps")

    def one(key: str, value: str, s: ContainerState) -> bool:
        if key == "id":
            return s.id.startswith(value)
        if key == "name":
            return value in s.name
        if key == "label":
            k, sep, v = value.partition("=")
            return k in s.labels and (not sep or s.labels[k] == v)
        if key == "status":
            return s.status == value
        if key == "exited":
            return s.status == "exited" and str(s.exit_code) == value
        if key == "ancestor":
            return value in (s.image, s.image_id, s.image_id.removeprefix("sha256:")[:12]) or (
                s.image.rsplit(":", 1)[0].endswith(value)
            )
        if key == "health":
            return (health_status(s) or "none") == value
        return True

    def matches(s: ContainerState) -> bool:
        return all(any(one(k, v, s) for v in vs) for k, vs in by_key.items())

    return matches


def before_since(
    states: list[ContainerState], filters: Sequence[str], find: Callable[[str], ContainerState]
) -> list[ContainerState]:
    """The ``before=`` and ``since=`` filters, by creation order."""
    out = states
    for f in filters:
        key, _, value = f.partition("=")
        if key in ("before", "since"):
            ref = find(value).created
            out = [s for s in out if (s.created < ref if key == "before" else s.created > ref)]
    return out


def image_row(img: LocalImage, *, containers: int = 0, no_trunc: bool = False) -> dict[str, Any]:
    """An ``images`` row with docker's field names."""
    created = parse_rfc3339(img.config.created)
    return {
        "ID": str(img.id) if no_trunc else img.id.short,
        "Repository": img.repository
        if img.repository == "<none>"
        else _familiar(img.repository + ":x").rsplit(":", 1)[0],
        "Tag": img.tag,
        "Digest": str(img.repo_digest or img.descriptor.digest),
        "Platform": str(img.platform),
        "CreatedSince": f"{ago(created)} ago" if created else "N/A",
        "CreatedAt": created.strftime("%Y-%m-%d %H:%M:%S +0000 UTC") if created else "",
        "Size": human_size(img.size),
        "VirtualSize": human_size(img.size),
        "Containers": str(containers),
    }


def image_filter(filters: Sequence[str]) -> Callable[[LocalImage], bool]:
    """docker images ``--filter``: reference, label, dangling."""
    import fnmatch

    by_key = _filters(filters, {"reference", "label", "dangling", "before", "since"}, "images")

    def one(key: str, value: str, img: LocalImage) -> bool:
        if key == "reference":
            names = {img.name, f"{img.repository}:{img.tag}", _familiar(img.name)}
            return any(fnmatch.fnmatchcase(n, value) or
                       fnmatch.fnmatchcase(n.rsplit(":", 1)[0], value) for n in names)  # fmt: skip
        if key == "label":
            k, sep, v = value.partition("=")
            labels = img.config.config.labels
            return k in labels and (not sep or labels[k] == v)
        if key == "dangling":
            return _bool_filter(value) == (img.tag == "<none>")
        return True

    def matches(img: LocalImage) -> bool:
        return all(any(one(k, v, img) for v in vs) for k, vs in by_key.items())

    return matches


def _familiar(name: str) -> str:
    from manyarch.errors import InvalidReference
    from manyarch.oci.reference import Reference

    try:
        return Reference.parse(name).familiar
    except InvalidReference:
        return name


def matches_reference(img: LocalImage, pattern: str) -> bool:
    """``images REPO[:TAG]``: the repository (familiar or full), and the tag when given."""
    import fnmatch

    repo, _, tag = pattern.partition(":") if "/" not in pattern.rsplit(":", 1)[-1] else (
        pattern, "", "")  # fmt: skip
    repos = {img.repository, _familiar(img.repository + ":x").rsplit(":", 1)[0]}
    if not any(fnmatch.fnmatchcase(r, repo) for r in repos):
        return False
    return not tag or fnmatch.fnmatchcase(img.tag, tag)


# -- inspect -------------------------------------------------------------------------


def _iso(text: str) -> str:
    return text or "0001-01-01T00:00:00Z"


def _host_config(s: ContainerState, ports: dict[str, Any]) -> dict[str, Any]:
    """``.HostConfig``: how the container was asked to run."""
    policy, _, count = s.restart.partition(":")
    return {
        "Binds": [str(m) for m in s.mount_list if m.type != "tmpfs" and m.source],
        "PortBindings": ports,
        "RestartPolicy": {"Name": policy, "MaximumRetryCount": int(count or 0)},
        "AutoRemove": s.remove,
        "Memory": s.memory,
        "NanoCpus": int(s.cpus * 1e9),
        "PidsLimit": s.pids_limit or None,
        "ReadonlyRootfs": s.read_only,
        "ExtraHosts": [f"{n}:{ip}" for n, ip in s.extra_hosts] or None,
        "Init": s.init,
        "Tmpfs": {m.target: "" for m in s.mount_list if m.type == "tmpfs"} or None,
        "NetworkMode": "pasta" if s.ports else "host",
    }


def _mounts_json(s: ContainerState) -> list[dict[str, Any]]:
    """``.Mounts``."""
    return [
        {
            "Type": m.type,
            "Name": m.source if m.type == "volume" else "",
            "Source": m.source if m.type == "bind" else (
                "" if m.type == "tmpfs" else str(_volume_path(m.source))),
            "Destination": m.target,
            "Mode": "ro" if m.readonly else "",
            "RW": not m.readonly,
        }
        for m in s.mount_list
    ]  # fmt: skip


def container_inspect(s: ContainerState) -> dict[str, Any]:
    """``docker inspect CONTAINER``'s JSON, the fields manyarch knows."""
    ports: dict[str, Any] = {}
    for p in s.port_mappings:
        ports.setdefault(f"{p.container_port}/{p.protocol}", []).append(
            {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)}
        )
    state: dict[str, Any] = {
        "Status": s.status,
        "Running": s.status == "running",
        "Paused": False,
        "Restarting": s.status == "restarting",
        "OOMKilled": s.oom_killed,
        "Dead": False,
        "Pid": s.pid if is_running(s) else 0,
        "ExitCode": s.exit_code if s.exit_code is not None else 0,
        "Error": s.exec_error,
        "StartedAt": _iso(s.started),
        "FinishedAt": _iso(s.finished),
    }
    h = health.read_status(s.directory) if s.healthcheck else None
    if h is not None:
        state["Health"] = h
    mounts = _mounts_json(s)
    config: dict[str, Any] = {
        "Hostname": s.hostname or s.id[:12],
        "User": s.user,
        "Env": [f"{k}={v}" for k, v in s.env.items()],
        "Cmd": s.cmd or None,
        "Entrypoint": s.entrypoint or None,
        "Image": s.image,
        "WorkingDir": s.cwd,
        "Labels": dict(s.labels),
        "Tty": s.tty,
        "OpenStdin": s.interactive,
        "StopSignal": s.stop_signal,
        "ExposedPorts": {k: {} for k in ports},
    }
    if s.healthcheck:
        config["Healthcheck"] = s.healthcheck
    if s.stop_timeout is not None:
        config["StopTimeout"] = int(s.stop_timeout)
    return {
        "Id": s.id,
        "Created": _iso(s.created),
        "Path": s.argv[0] if s.argv else "",
        "Args": s.argv[1:],
        "State": state,
        "Image": s.image_id,
        "Name": f"/{s.name}",
        "RestartCount": s.restart_count,
        "Platform": s.platform.split("/")[0],
        "ImagePlatform": s.platform,
        "HostConfig": _host_config(s, ports),
        "Mounts": mounts,
        "Config": config,
        "NetworkSettings": {"Ports": ports},
    }


def _volume_path(name: str) -> Any:
    from manyarch.run.mounts import volume_path

    return volume_path(name)


def image_inspect(img: LocalImage, names: Sequence[str] = ()) -> dict[str, Any]:
    """``docker image inspect``'s JSON, the fields manyarch knows."""
    cfg = img.config
    tags = sorted({_familiar(n) for n in (names or [img.name]) if "@" not in n})
    repo_digests = []
    if img.repo_digest is not None:
        repo_digests.append(
            f"{_familiar(img.repository + ':x').rsplit(':', 1)[0]}@{img.repo_digest}"
        )
    config = cfg.config.to_json()
    return {
        "Id": str(img.id),
        "RepoTags": tags,
        "RepoDigests": repo_digests,
        "Created": cfg.created or "",
        "Config": config,
        "Architecture": cfg.platform.architecture,
        "Variant": img.platform.variant or None,
        "Os": cfg.platform.os,
        "Size": img.size,
        "RootFS": {"Type": "layers", "Layers": [str(d) for d in cfg.diff_ids]},
        "Descriptor": img.descriptor.to_json(),
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def for_template(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The inspect JSON as a template's data (the same mapping)."""
    return obj
