"""Resolution with uv for the target's exact tags and markers, and the wheels fetched.

``uv pip compile --format pylock.toml --python-platform
{arch}-manylinux_2_{glibc} --python-version X.Y.Z`` resolves as the image's
pip would (pip's index semantics: ``--index-strategy unsafe-best-match``);
when a resolved name is already installed in the image, ``uv pip install
--dry-run --target VIEW`` over a copy of the image's distribution metadata
decides what pip would leave alone. uv runs in a sandbox
(:func:`manyarch.sandbox.host.run_host_tool`) with its own cache, no
configuration of the host's, and only the step's options translated from
pip's. Of the wheels pylock lists, the one pip would choose (the best tag in
the target's tag order) is fetched into a cache keyed by sha256.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import os
import shutil
import sys
import threading
import tomllib
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manyarch.errors import BuildError
from manyarch.imagebuild.nativepip.command import NativePipUnavailable
from manyarch.imagebuild.nativepip.place import canonical
from manyarch.imagebuild.nativepip.target import TargetFacts
from manyarch.sandbox.rootpath import resolve_in_root

_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


_UV_LOCK = threading.Lock()
#: One platform of a build on the network at a time: with both platforms' uv and
#: downloads at once, this machine's resolver dropped lookups (a burst of ~24
#: getaddrinfo: 5 s each, glibc's timeout), and two uv filling one cache at once
#: made one wait 5 s; one after the other, the second finds the index pages cached.
_NETWORK = threading.Lock()
#: Connections (and threads) that download wheels.
_CONNECTIONS = 2


@functools.cache
def _uv_binary() -> str:
    beside = Path(sys.executable).parent / "uv"  # the venv's own, as pip installed it
    if beside.is_file():
        return str(beside)
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError) as e:
        found = shutil.which("uv")
        if found is None:
            raise NativePipUnavailable("uv is not installed on the host") from e
        return found


def uv_binary() -> str:
    """The uv executable of the ``uv`` distribution manyarch depends on."""
    # once, under a lock: find_uv_bin reads sysconfig, whose first read is not
    # thread-safe (the platforms of a build ask at once)
    with _UV_LOCK:
        return _uv_binary()


def uv_env(cache_dir: Path) -> dict[str, str]:
    """uv's environment: its cache, no host configuration, no interpreter downloads."""
    env = {
        "UV_CACHE_DIR": str(cache_dir / "uv"),
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
        "PATH": "/usr/bin:/bin",
    }
    ca = os.environ.get("SSL_CERT_FILE") or _CA_BUNDLE
    if Path(ca).exists():
        env["SSL_CERT_FILE"] = ca
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


@dataclass(frozen=True)
class Resolved:
    """One distribution to install: its pinned version and the wheel pip would pick."""

    name: str
    version: str
    url: str
    sha256: str
    filename: str
    #: no wheel fits the target: this is the sdist, to build
    sdist: bool = False


@dataclass(frozen=True)
class ResolveRequest:
    """What to resolve: requirement lines and files, and pip's options translated."""

    requirements: Sequence[str] = ()
    #: host paths of requirement files (inside the rootfs)
    requirement_files: Sequence[Path] = ()
    constraint_files: Sequence[Path] = ()
    index_url: str | None = None
    extra_index_urls: Sequence[str] = ()
    no_index: bool = False
    #: URLs or host paths
    find_links: Sequence[str] = ()
    pre: bool = False
    no_deps: bool = False
    only_binary: bool = False
    #: names pip would upgrade even when installed (``-U``), or all (``eager``)
    upgrade: Sequence[str] = ()
    upgrade_all: bool = False
    #: consult what is installed (not with ``--ignore-installed``/``--target``/reinstall)
    installed_view: Sequence[Path] = ()
    #: wheels an earlier command of the line installs (they join the view)
    installed_wheels: Sequence[Path] = ()
    require_hashes: bool = False
    #: every requirement pinned ``name==version``: resolve from uv's cached index
    #: pages first, kept only when the result is exactly those pins (the whole closure)
    pins: Mapping[str, str] | None = None


def resolve(
    request: ResolveRequest, facts: TargetFacts, *, cache_dir: Path, tmp: Path, rootfs: Path
) -> list[Resolved]:
    """The distributions pip would install for ``request``, in resolution order."""
    uv = uv_binary()
    common = [
        "--python",
        sys.executable,
        "--python-platform",
        facts.uv_platform,
        "--python-version",
        facts.python_version,
        "--index-strategy",
        "unsafe-best-match",
        "--quiet",
    ]
    if request.only_binary:
        common += ["--only-binary", ":all:"]
    if request.index_url:
        common += ["--index-url", request.index_url]
    for url in request.extra_index_urls:
        common += ["--extra-index-url", url]
    if request.no_index:
        common.append("--no-index")
    for link in request.find_links:
        common += ["--find-links", link]
    if request.pre:
        common += ["--prerelease", "allow"]
    for c in request.constraint_files:
        common += ["-c", str(c)]
    inputs = [str(f) for f in request.requirement_files]
    if request.requirements:
        line_file = tmp / "command-line.in"
        line_file.write_text("".join(f"{r}\n" for r in request.requirements))
        inputs.append(str(line_file))
    lock = tmp / "pylock.toml"
    compile_cmd = [uv, "pip", "compile", *common, "--format", "pylock.toml", "--no-header"]
    compile_cmd += ["-o", str(lock)]
    if request.no_deps:
        compile_cmd.append("--no-deps")
    packages: list[dict[str, Any]] | None
    packages = _offline(request, compile_cmd, inputs, cache_dir, tmp, rootfs, lock)
    if packages is None:
        with _NETWORK:
            _run_uv([*compile_cmd, *inputs], cache_dir, tmp, rootfs)
        packages = tomllib.loads(lock.read_text()).get("packages", [])
    installed = _view(request.installed_view, tmp / "view", request.installed_wheels)
    if installed & {canonical(p["name"]) for p in packages}:
        # pip's only-if-needed: ask uv what an install over the image's would change
        cmd = [uv, "pip", "install", "--dry-run", "--output-format", "json", *common]
        cmd += ["--target", str(tmp / "view")]
        if request.no_deps:
            cmd.append("--no-deps")
        if request.upgrade_all:
            cmd.append("--upgrade")
        for name in request.upgrade:
            cmd += ["--upgrade-package", name]
        with _NETWORK:
            out = _run_uv([*cmd, *(f"-r{f}" for f in inputs)], cache_dir, tmp, rootfs)
        changes = json.loads(out).get("changes", [])
        pins = {canonical(c["name"]): c["version"] for c in changes if c["action"] == "installed"}
        packages = [p for p in packages if pins.get(canonical(p["name"])) == p["version"]]
        if len(packages) != len(pins):
            # the installed versions constrained the resolution: compile the pins
            (tmp / "pins.in").write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
            with _NETWORK:
                _run_uv([*compile_cmd, "--no-deps", str(tmp / "pins.in")], cache_dir, tmp, rootfs)
            packages = tomllib.loads(lock.read_text()).get("packages", [])
    return [_best_wheel(p, facts.tags) for p in packages]


def _offline(
    request: ResolveRequest,
    compile_cmd: Sequence[str],
    inputs: Sequence[str],
    cache_dir: Path,
    tmp: Path,
    rootfs: Path,
    lock: Path,
) -> list[dict[str, Any]] | None:
    """A fully pinned closure resolved from uv's cache alone (no index request), or None."""
    if not request.pins or request.no_index:
        return None
    if not any((cache_dir / "uv").glob("simple-v*/*")):
        return None  # no index page cached: uv would fail, after starting for nothing
    try:
        _run_uv([*compile_cmd, "--offline", *inputs], cache_dir, tmp, rootfs)
    except NativePipUnavailable:
        return None
    packages: list[dict[str, Any]] = tomllib.loads(lock.read_text()).get("packages", [])
    got = {canonical(str(p["name"])): str(p.get("version")) for p in packages}
    if got != {canonical(k): v for k, v in request.pins.items()}:
        return None
    if any(not p.get("wheels") for p in packages):
        return None
    return packages


def _run_uv(argv: Sequence[str], cache_dir: Path, tmp: Path, rootfs: Path) -> str:
    from manyarch.sandbox.host import run_host_tool

    (cache_dir / "uv").mkdir(parents=True, exist_ok=True)
    r = run_host_tool(
        argv,
        env=uv_env(cache_dir),
        readonly=[rootfs.resolve()],
        writable=[tmp, cache_dir / "uv"],
        cwd=str(tmp),
        network=True,
    )
    if r.returncode != 0:
        raise NativePipUnavailable(_uv_failure(r.stderr.decode(errors="replace")))
    return r.stdout.decode()


def _uv_failure(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "has no wheels with a matching platform tag" in ln or "no wheels" in ln:
            return "a requirement has no wheel for the target: " + ln.lstrip("╰─▶ ")
    body = [ln.lstrip("×╰─▶ ").strip() for ln in lines if not ln.startswith("hint")]
    return "uv could not resolve: " + ("; ".join(body[-3:]) if body else "no output")


def _view(dirs: Sequence[Path], view: Path, wheels: Sequence[Path] = ()) -> set[str]:
    """Copies of the installed distributions' metadata (uv ignores symlinked ones); their names."""
    names: set[str] = set()
    view.mkdir(exist_ok=True)
    for w in reversed(wheels):  # the last install of a name wins
        with zipfile.ZipFile(w) as zf:
            top = next(n.split("/")[0] for n in zf.namelist() if ".dist-info/" in n)
            name = canonical(top.split("-")[0])
            if name in names:
                continue
            names.add(name)
            (view / top).mkdir()
            for f in ("METADATA", "RECORD"):
                (view / top / f).write_bytes(zf.read(f"{top}/{f}"))
    for d in dirs:
        if not d.is_dir():
            continue
        for info in sorted(d.iterdir()):
            if info.suffix not in (".dist-info", ".egg-info"):
                continue
            name = canonical(info.name.split("-")[0])
            if name in names:
                continue  # the first on sys.path is what pip sees
            names.add(name)
            if info.is_dir():
                (view / info.name).mkdir()
                for f in ("METADATA", "PKG-INFO", "RECORD", "INSTALLER", "top_level.txt"):
                    if (info / f).is_file():
                        shutil.copyfile(info / f, view / info.name / f)
            elif info.is_file():
                shutil.copyfile(info, view / info.name)
    return names


def _best_wheel(package: Mapping[str, object], tags: Sequence[str]) -> Resolved:
    """pip's choice: the wheel whose best tag comes first in the interpreter's tag list."""
    rank = {t: i for i, t in enumerate(tags)}
    best: Mapping[str, object] | None = None
    best_rank = len(rank)
    wheels = package.get("wheels") or []
    assert isinstance(wheels, list)
    for w in wheels:
        fname = str(w.get("url") or w.get("path") or "").rsplit("/", 1)[-1]
        parts = fname[:-4].split("-")
        if len(parts) < 5:
            continue
        r = min(
            rank.get(f"{py}-{abi}-{plat}", len(rank))
            for py in parts[-3].split(".")
            for abi in parts[-2].split(".")
            for plat in parts[-1].split(".")
        )
        if r < best_rank:
            best, best_rank = w, r
    name, version = str(package["name"]), str(package.get("version", ""))
    sdist = package.get("sdist")
    if best is None and isinstance(sdist, dict) and sdist.get("url"):
        hashes = sdist.get("hashes") or {}
        url = str(sdist["url"])
        sha = str(hashes.get("sha256", "")) if isinstance(hashes, dict) else ""
        return Resolved(name, version, url, sha, url.rsplit("/", 1)[-1], sdist=True)
    if best is None:
        raise NativePipUnavailable(f"{name} {version} has no wheel for the target")
    url = str(best.get("url") or "")
    if not url and best.get("path"):
        url = "file://" + str(best["path"])
    hashes = best.get("hashes") or {}
    assert isinstance(hashes, dict)
    sha = str(hashes.get("sha256", ""))
    return Resolved(name, version, url, sha, url.rsplit("/", 1)[-1].split("#", 1)[0])


def fetch(wheels: Sequence[Resolved], cache_dir: Path) -> list[Path]:
    """The wheels, from the cache (by sha256) or downloaded (hash checked), in order."""
    out = [cache_dir / "wheels" / (w.sha256 or "nohash") / w.filename for w in wheels]
    if all(w.sha256 and p.exists() for w, p in zip(wheels, out, strict=True)):
        return out
    with _NETWORK:  # then what the other platform fetched meanwhile is there
        _download(
            [(w, p) for w, p in zip(wheels, out, strict=True) if not w.sha256 or not p.exists()]
        )
    return out


def _download(missing: Sequence[tuple[Resolved, Path]]) -> None:
    """Each wheel into its path in the cache, hash checked."""
    if not missing:
        return
    import ssl

    import httpx

    ca = os.environ.get("SSL_CERT_FILE") or _CA_BUNDLE
    verify = ssl.create_default_context(cafile=ca) if Path(ca).exists() else True
    # two connections: each new one is a lookup, and a burst of them after uv's
    # own was what this machine's resolver dropped (5 s for 6 of 8 downloads)
    limits = httpx.Limits(max_connections=_CONNECTIONS)
    with httpx.Client(verify=verify, timeout=120, follow_redirects=True, limits=limits) as client:

        def get(item: tuple[Resolved, Path]) -> None:
            w, p = item
            if w.url.startswith("file://"):
                data = Path(w.url[7:]).read_bytes()
            else:
                try:
                    data = client.get(w.url).raise_for_status().content
                except httpx.HTTPError as e:
                    raise BuildError(
                        f"native pip: downloading {w.filename} failed: {e}",
                        "check the network, or build without native pip",
                    ) from e
            got = hashlib.sha256(data).hexdigest()
            if w.sha256 and got != w.sha256:
                raise BuildError(f"native pip: {w.filename} did not download as announced")
            p.parent.mkdir(parents=True, exist_ok=True)
            # the platforms of a build fetch the same pure wheels at once: a name of their own
            part = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.part")
            part.write_bytes(data)
            os.replace(part, p)

        with concurrent.futures.ThreadPoolExecutor(_CONNECTIONS) as pool:
            list(pool.map(get, missing))


def installed_dirs(rootfs: Path, site_dirs: Sequence[str]) -> list[Path]:
    """Host paths of the image's site directories (for the installed view)."""
    return [resolve_in_root(rootfs, d) for d in site_dirs]
