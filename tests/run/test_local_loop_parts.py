"""The local loop's pure parts, table by table: docker's mount and size syntax, the cgroup
hierarchies a machine has (and the refusal where none may be made), the health verdicts,
the json-file log records."""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch.errors import InvalidArgument, LimitsUnavailable
from manyarch.run import cgroups, health, logs, mounts
from manyarch.run.health import Healthcheck, Monitor
from manyarch.run.mounts import Mount
from manyarch.run.spec import hosts_file, parse_add_host
from manyarch.units import parse_go_duration, parse_size, parse_timestamp


@pytest.mark.parametrize(
    ("text", "mount"),
    [
        ("/data", Mount("volume", "/data")),
        ("/srv:/data", Mount("bind", "/data", "/srv")),
        ("/srv:/data:ro", Mount("bind", "/data", "/srv", readonly=True)),
        ("/srv:/data:ro,Z", Mount("bind", "/data", "/srv", readonly=True)),
        ("cache:/root/.cache", Mount("volume", "/root/.cache", "cache")),
        ("cache:/c:rw", Mount("volume", "/c", "cache")),
    ],
)
def test_volume_flags_read_as_docker_reads_them(text: str, mount: Mount) -> None:
    assert mounts.parse_volume(text) == mount


@pytest.mark.parametrize(
    ("text", "mount"),
    [
        ("type=tmpfs,target=/t,tmpfs-size=1m", Mount("tmpfs", "/t", size=1 << 20)),
        ("type=volume,source=v,target=/v,readonly", Mount("volume", "/v", "v", readonly=True)),
        ("type=bind,src=/,dst=/host,ro=true", Mount("bind", "/host", "/", readonly=True)),
        ("target=/anon", Mount("volume", "/anon")),
    ],
)
def test_mount_flags(text: str, mount: Mount) -> None:
    assert mounts.parse_mount(text) == mount


@pytest.mark.parametrize(
    "text", ["relative:dir", "/a:b", "type=tmpfs,source=x,target=/t", "type=bind,target=/x",
             "type=bind,source=/nonexistent-here,target=/x", "type=image,target=/x",
             "type=volume,target=/x,nocopy-ish=1"],
)  # fmt: skip
def test_bad_mounts_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument):
        (mounts.parse_mount if "type=" in text else mounts.parse_volume)(text)


def test_tmpfs_flag_and_anonymous_volumes() -> None:
    assert mounts.parse_tmpfs("/run:size=64m,mode=755") == Mount(
        "tmpfs", "/run", size=64 << 20, mode=0o755
    )
    [named] = mounts.with_anonymous_names([Mount("volume", "/data")])
    assert len(named.source) == 64 and named.target == "/data"
    with pytest.raises(InvalidArgument):
        mounts.check_targets([Mount("volume", "/x"), Mount("bind", "/x", "/srv")])


@pytest.mark.parametrize(
    ("text", "value"), [("64m", 64 << 20), ("1g", 1 << 30), ("512kb", 512 << 10), ("100", 100)]
)
def test_sizes_as_go_units_reads_them(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("2h", 7200.0), ("0", 0.0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == seconds
    with pytest.raises(ValueError):
        parse_go_duration("30")


def test_log_times_as_docker_reads_them() -> None:
    assert parse_timestamp("1700000000") == 1_700_000_000
    assert parse_timestamp("2023-11-14T22:13:20Z") == 1_700_000_000
    assert parse_timestamp("10m", now=1_700_000_600) == 1_700_000_000


def test_add_host_and_hosts_file() -> None:
    assert parse_add_host("db:10.0.0.5") == ("db", "10.0.0.5")
    assert parse_add_host("v6=[::1]") == ("v6", "::1")
    with pytest.raises(InvalidArgument):
        parse_add_host("db:not-an-ip")
    text = hosts_file("box", [("db", "10.0.0.5"), ("gw", "host-gateway")], host_network=False)
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert text.endswith("10.0.0.5\tdb\n" + text.splitlines()[-2] + "\n127.0.1.1\tbox\n")


def _fake_cgroup_fs(tmp_path: Path, *, v1: bool) -> cgroups.Mounts:
    root = tmp_path / "cg"
    if v1:
        info = "".join(
            f"30 20 0:{i} / {root}/{c} rw - cgroup cgroup rw,{c}\n"
            for i, c in enumerate(("memory", "cpu", "pids"))
        )
        own = "4:memory:/job\n3:cpu,cpuacct:/\n2:pids:/\n0::/\n"
        for c in ("memory", "cpu", "pids"):
            (root / c / "job" if c == "memory" else root / c).mkdir(parents=True)
    else:
        info = f"30 20 0:1 / {root} rw - cgroup2 cgroup2 rw\n"
        own = "0::/user.slice\n"
        (root / "user.slice").mkdir(parents=True)
        (root / "user.slice/cgroup.subtree_control").write_text("cpu pids\n")
    (tmp_path / "mountinfo").write_text(info)
    (tmp_path / "cgroup").write_text(own)
    return cgroups.Mounts.read(tmp_path / "mountinfo", tmp_path / "cgroup")


def test_cgroup_v1_limits_are_written_below_our_own_cgroup(tmp_path: Path) -> None:
    m = _fake_cgroup_fs(tmp_path, v1=True)
    group = cgroups.create("c1", cgroups.Limits(memory=64 << 20, cpus=1.5, pids=20), m)
    root = tmp_path / "cg"
    assert (root / "memory/job/manyarch-c1/memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (root / "cpu/manyarch-c1/cpu.cfs_quota_us").read_text() == "150000"
    assert (root / "pids/manyarch-c1/pids.max").read_text() == "20"
    assert group.version == 1 and len(group.paths) == 3


def test_limits_are_refused_where_the_controllers_are_not_delegated(tmp_path: Path) -> None:
    m = _fake_cgroup_fs(tmp_path, v1=False)  # v2 delegating cpu and pids, not memory
    cgroups.create("ok", cgroups.Limits(pids=5), m)
    with pytest.raises(LimitsUnavailable) as info:
        cgroups.check(cgroups.Limits(memory=64 << 20, pids=5), m)
    assert info.value.message.startswith("the memory and process limits need cgroups")
    with pytest.raises(LimitsUnavailable):
        cgroups.check(cgroups.Limits(cpus=1), cgroups.Mounts())  # no cgroup fs at all
    with pytest.raises(InvalidArgument):
        cgroups.Limits(memory=1000).validate()  # docker's 6 MB floor


def test_health_verdicts_follow_dockers_rules(tmp_path: Path) -> None:
    results = iter([(1, b"no"), (0, b"ok"), (1, b"a"), (1, b"b"), (7, b"c")])
    check = Healthcheck(("CMD-SHELL", "probe"), retries=3)
    mon = Monitor(check, tmp_path, lambda argv, timeout: next(results))
    mon.run_once(in_start=True)  # a failure in the start period does not count
    assert mon.state["Status"] == "starting" and mon.state["FailingStreak"] == 0
    mon.run_once()
    assert mon.state["Status"] == "healthy"
    mon.run_once()
    mon.run_once()
    assert mon.state["Status"] == "healthy" and mon.state["FailingStreak"] == 2
    mon.run_once()
    assert mon.state["Status"] == "unhealthy"
    assert health.read_status(tmp_path) == mon.state
    assert [e["ExitCode"] for e in mon.state["Log"]] == [1, 0, 1, 1, 7]  # the last five


def test_health_flags_merge_over_the_images_check() -> None:
    image = Healthcheck.from_config(
        {"Test": ["CMD", "probe"], "Interval": 30_000_000_000, "Retries": 5}
    )
    assert image is not None and image.argv() == ["probe"] and image.retries == 5
    merged = health.from_flags(image, interval="2s")
    assert merged is not None and merged.interval == 2.0 and merged.test == ("CMD", "probe")
    assert health.from_flags(image, disabled=True) is None
    assert Healthcheck.from_config({"Test": ["NONE"]}) is None
    with pytest.raises(InvalidArgument):
        health.from_flags(None, interval="2s")  # timings without a check


def test_log_records_round_trip_and_select(tmp_path: Path) -> None:
    w = logs.Writer(tmp_path / "log")
    w.write("stdout", b"one\ntw")
    w.write("stderr", b"err\n")
    w.write("stdout", b"o\n")
    w.write("stdout", b"\xff\xfe unfinished")
    w.close()
    records = logs.read(tmp_path / "log")
    assert [(r.stream, r.data) for r in records] == [
        ("stdout", b"one\n"),
        ("stderr", b"err\n"),
        ("stdout", b"two\n"),
        ("stdout", b"\xff\xfe unfinished"),
    ]
    assert records[0].timestamp().endswith("Z") and len(records[0].timestamp()) == 30
    assert [r.data for r in logs.select(records, tail=1)] == [b"\xff\xfe unfinished"]
    assert logs.select(records, tail=0) == []
    assert logs.select(records, since=records[-1].time + 1) == []
