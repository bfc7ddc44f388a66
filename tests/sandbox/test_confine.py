"""Docker's confinement as data: capabilities, the masked /proc, and moby's seccomp profile
read as moby's setupSeccomp reads it (the enforcement itself: test_hostile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from manyarch.errors import InvalidArgument
from manyarch.sandbox import netns, seccomp
from manyarch.sandbox.confine import (
    ALL_CAPS,
    DEFAULT_CAPS,
    Security,
    cap_args,
    parse_cap,
    proc_args,
)


@pytest.mark.parametrize(
    ("text", "cap"),
    [("NET_ADMIN", "CAP_NET_ADMIN"), ("cap_sys_admin", "CAP_SYS_ADMIN"), ("all", "ALL")],
)
def test_capabilities_as_docker_spells_them(text: str, cap: str) -> None:
    assert parse_cap(text) == cap


def test_an_unknown_capability_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown capability"):
        parse_cap("FLY")


@pytest.mark.parametrize(
    ("security", "caps"),
    [
        (Security(), DEFAULT_CAPS),
        (Security.of(cap_add=["NET_ADMIN"]), DEFAULT_CAPS | {"CAP_NET_ADMIN"}),
        (Security.of(cap_drop=["CHOWN"]), DEFAULT_CAPS - {"CAP_CHOWN"}),
        (Security.of(cap_drop=["ALL"], cap_add=["KILL"]), {"CAP_KILL"}),
        (Security.of(cap_add=["ALL"]), ALL_CAPS),
        (Security(privileged=True), ALL_CAPS),
    ],
)
def test_the_bounding_set(security: Security, caps: frozenset[str]) -> None:
    assert security.capabilities() == caps
    assert (
        Security.from_json(
            {k: list(v) if isinstance(v, tuple) else v for k, v in security.__dict__.items()}
        )
        == security
    )


def test_root_gets_the_set_and_a_user_nothing() -> None:
    root = cap_args(Security(), 0)
    assert root[:2] == ["--cap-drop", "ALL"]
    assert sorted(root[3::2]) == sorted(DEFAULT_CAPS) and len(root) == 2 + 2 * len(DEFAULT_CAPS)
    assert cap_args(Security(), 1000) == ["--cap-drop", "ALL"]


def test_only_the_paths_this_kernel_has_are_masked(tmp_path: Path) -> None:
    (tmp_path / "acpi").mkdir()
    (tmp_path / "keys").touch()
    (tmp_path / "sys").mkdir()
    args = proc_args(tmp_path)
    assert args == [
        "--perms", "0555", "--tmpfs", "/proc/acpi", "--remount-ro", "/proc/acpi",
        "--dev-bind", "/dev/null", "/proc/keys",
        "--ro-bind", "/proc/sys", "/proc/sys",
    ]  # fmt: skip


def _rules(caps: frozenset[str], **kw: Any) -> dict[str, list[dict[str, Any]]]:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for rule in seccomp.rules(caps, **kw)["rules"]:
        for name in rule["names"]:
            by_name.setdefault(name, []).append(rule)
    return by_name


def test_the_profile_as_moby_reads_it_for_docker_defaults() -> None:
    spec = seccomp.rules(DEFAULT_CAPS, arch="amd64", kernel=(6, 1))
    assert spec["default_errno"] == 1
    assert spec["arches"] == ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    rules = _rules(DEFAULT_CAPS, arch="amd64", kernel=(6, 1))
    for refused in ("open_by_handle_at", "mount", "unshare", "setns", "bpf", "init_module"):
        assert refused not in rules, refused
    assert rules["arch_prctl"] and "riscv_flush_icache" not in rules
    assert rules["chroot"][0]["conditions"] == [[]]  # CAP_SYS_CHROOT is Docker's
    [clone] = rules["clone"]  # only without namespaces: flags & 0x7E020000 == 0
    assert clone["conditions"] == [[(0, "SCMP_CMP_MASKED_EQ", 2114060288, 0)]]
    assert rules["clone3"][0]["errno"] == 38  # ENOSYS: glibc falls back to clone
    assert len(rules["personality"]) == 5  # one rule per allowed value


def test_capabilities_open_their_system_calls() -> None:
    caps = DEFAULT_CAPS | {"CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH"}
    rules = _rules(caps, arch="amd64", kernel=(6, 1))
    assert "mount" in rules and "open_by_handle_at" in rules
    assert "clone3" not in [n for n, r in rules.items() if any(x["errno"] for x in r)]
    assert all(r["conditions"] == [[]] for r in rules["clone"])


def test_old_kernels_and_other_architectures() -> None:
    assert "ptrace" not in _rules(DEFAULT_CAPS, arch="amd64", kernel=(4, 4))
    assert "ptrace" in _rules(DEFAULT_CAPS, arch="amd64", kernel=(4, 8))
    arm = seccomp.rules(DEFAULT_CAPS, arch="arm64", kernel=(6, 1))
    assert arm["arches"] == ["SCMP_ARCH_ARM"]
    assert "arch_prctl" not in _rules(DEFAULT_CAPS, arch="arm64", kernel=(6, 1))


def test_same_argument_conditions_become_separate_rules() -> None:
    args = [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
    ]
    assert seccomp._conditions(args) == [
        [(0, "SCMP_CMP_EQ", 1, 0)],
        [(0, "SCMP_CMP_EQ", 2, 0)],
    ]
    both = [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"},
    ]
    assert seccomp._conditions(both) == [[(0, "SCMP_CMP_EQ", 1, 0), (1, "SCMP_CMP_EQ", 2, 0)]]


def test_the_filter_is_compiled_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = seccomp.compiled(DEFAULT_CAPS)
    assert first.parent == tmp_path / "manyarch" / "seccomp"
    assert first.stat().st_size % 8 == 0 and first.stat().st_size > 100  # sock_filter[]
    mtime = first.stat().st_mtime_ns
    assert seccomp.compiled(DEFAULT_CAPS) == first and first.stat().st_mtime_ns == mtime
    assert seccomp.compiled(DEFAULT_CAPS | {"CAP_SYS_ADMIN"}) != first


@pytest.mark.parametrize(
    ("host", "sandbox"),
    [
        ("nameserver 10.0.0.2\nsearch corp\n", None),
        ("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
         "nameserver 169.254.1.1\noptions edns0 trust-ad\nsearch .\n"),
        ("nameserver 127.0.0.1\nnameserver ::1\n", "nameserver 169.254.1.1\n"),
        ("nameserver 127.0.0.53\nnameserver 10.0.0.2\n", None),  # one it can reach
        ("# empty\n", None),
    ],
)  # fmt: skip
def test_a_loopback_resolver_gives_way_to_pastas_forwarder(host: str, sandbox: str | None) -> None:
    assert netns.resolv_conf(host) == sandbox
