import pytest
from hypothesis import given
from hypothesis import strategies as st

from manyarch.errors import InvalidPlatform
from manyarch.oci.platform import (
    Platform,
    amd64_level,
    best_match,
    host_platform,
    host_platform_from,
    parse_platforms,
)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/i686", "linux/386"),
        ("Linux/AMD64", "linux/amd64"),
        ("arm64", "linux/arm64"),
        ("linux/ppc64el", "linux/ppc64le"),
        ("windows/amd64", "windows/amd64"),
    ],
)
def test_parse_normalises(text: str, want: str) -> None:
    assert str(Platform.parse(text)) == want


@pytest.mark.parametrize("text", ["", "linux", "linux/", "a/b/c/d", "linux/amd 64", "nope/amd64"])
def test_parse_errors(text: str) -> None:
    with pytest.raises(InvalidPlatform) as e:
        Platform.parse(text)
    assert e.value.hint


_ARCH = st.sampled_from(
    ["amd64", "x86_64", "arm64", "aarch64", "arm", "armhf", "386", "riscv64", "s390x"]
)
_VAR = st.sampled_from(["", "v1", "v2", "v3", "v5", "v6", "v7", "v8"])


@given(st.sampled_from(["linux", "windows", "darwin"]), _ARCH, _VAR)
def test_format_parse_round_trip(os: str, arch: str, variant: str) -> None:
    p = Platform.of(os, arch, variant)
    assert Platform.parse(str(p)) == p
    assert Platform.from_json(p.to_json()) == p


@pytest.mark.parametrize(
    ("wanted", "vector"),
    [
        ("linux/amd64/v3", ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64"]),
        ("linux/amd64", ["linux/amd64"]),
        ("linux/arm/v7", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        (
            "linux/arm64",
            ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"],
        ),
    ],
)
def test_fallbacks(wanted: str, vector: list[str]) -> None:
    assert [str(p) for p in Platform.parse(wanted).fallbacks()] == vector


@pytest.mark.parametrize(
    ("wanted", "candidates", "chosen"),
    [
        ("linux/amd64/v3", ["linux/arm64", "linux/amd64"], "linux/amd64"),
        ("linux/amd64/v3", ["linux/amd64", "linux/amd64/v2"], "linux/amd64/v2"),
        ("linux/amd64/v2", ["linux/amd64/v3", "linux/amd64"], "linux/amd64"),
        ("linux/arm/v7", ["linux/arm/v5", "linux/arm/v6"], "linux/arm/v6"),
        ("linux/arm64", ["linux/amd64", "linux/arm/v7"], "linux/arm/v7"),
        ("linux/arm64/v8", ["linux/aarch64"], "linux/arm64"),
        ("linux/arm/v6", ["linux/arm/v7"], None),
        ("linux/amd64", ["linux/arm64", "windows/amd64"], None),
    ],
)
def test_best_match(wanted: str, candidates: list[str], chosen: str | None) -> None:
    cands = [Platform.parse(c) for c in candidates]
    got = best_match(Platform.parse(wanted), cands)
    assert (str(got) if got else None) == chosen


def test_amd64_levels() -> None:
    v2 = {"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"}
    v3 = v2 | {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
    assert amd64_level(set()) == "v1"
    assert amd64_level(v2) == "v2"
    assert amd64_level(v3) == "v3"
    assert amd64_level(v3 - {"avx2"}) == "v2"
    cpuinfo = "processor: 0\nflags\t\t: " + " ".join(sorted(v3)) + "\n"
    assert str(host_platform_from("x86_64", cpuinfo)) == "linux/amd64/v3"
    assert str(host_platform_from("aarch64", "")) == "linux/arm64"
    assert str(host_platform_from("armv7l", "CPU architecture: 7\n")) == "linux/arm/v7"


def test_host_platform_runs_itself() -> None:
    h = host_platform()
    assert h.os == "linux"
    assert best_match(h, [Platform.of(h.os, h.architecture)]) is not None


def test_parse_platforms_list() -> None:
    got = parse_platforms("linux/amd64,linux/arm64, linux/x86_64")
    assert [str(p) for p in got] == ["linux/amd64", "linux/arm64"]
    with pytest.raises(InvalidPlatform):
        parse_platforms(" , ")


def test_default_platform_is_containerds_default_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    # a build without --platform targets linux/amd64, not the host's x86-64 level, and
    # containerd's Only(linux/amd64) (our fallbacks) does not take amd64/v4 for it
    from manyarch.oci import platform as mod

    for host, default in (
        ("linux/amd64/v4", "linux/amd64"),
        ("linux/arm64", "linux/arm64"),
        ("linux/arm/v6", "linux/arm/v6"),
    ):
        monkeypatch.setattr(mod, "host_platform", lambda h=host: Platform.parse(h))
        got = mod.default_platform()
        assert str(got) == default
        assert Platform.parse(default).same(got)
    only = Platform.parse("linux/amd64").fallbacks()
    assert not any(p.same(Platform.parse("linux/amd64/v4")) for p in only)
