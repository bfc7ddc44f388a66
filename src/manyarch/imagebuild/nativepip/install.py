"""Native pip's install: resolve and fetch on the host, place the target's wheels."""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manyarch.bytecode import bytecode_magic, compile_tree, host_python
from manyarch.errors import BuildError
from manyarch.imagebuild.nativepip.command import (
    _PIP_ENV_PASS,
    NativePip,
    NativePipUnavailable,
    PipInstall,
    requirement_file_problem,
)
from manyarch.imagebuild.nativepip.target import TargetFacts, file_digest
from manyarch.sandbox.rootpath import resolve_in_root

#: Host variables the host pip keeps (the proxy and its CA); the rest of PIP_* goes.
_HOST_PIP_KEEP = ("PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_PROXY")
#: pip configuration files in an image change what pip does there.
_IMAGE_PIP_CONFIGS = ("etc/pip.conf", "etc/xdg/pip/pip.conf", "root/.config/pip/pip.conf")
#: The host pip runs in a child process (pip keeps global state, and is patched
#: there); this is that process's entry point, handed its arguments.
_RUNNER = [
    sys.executable,
    "-c",
    "import sys; from manyarch.imagebuild.nativepip.hostpip import runner; "
    "raise SystemExit(runner(sys.argv[1:]))",
]


def install(
    plan: NativePip,
    rootfs: Path,
    facts: TargetFacts,
    *,
    cache_dir: Path,
    epoch: int | None = None,
) -> list[str]:
    """Install ``plan`` into ``rootfs``; returns ``name==version`` installed, in order.

    Raises :class:`NativePipUnavailable` (nothing changed in the rootfs
    for the command that raised) when a wheel is missing for the target.
    """
    done: list[str] = []
    for cmd in plan.commands:
        done += _execute_one(cmd, rootfs, facts, plan.env, plan.workdir, cache_dir, epoch)
    return done


def _scheme_for(cmd: PipInstall, facts: TargetFacts, dist: str) -> dict[str, str]:
    if cmd.user:
        base = facts.user_scheme
    elif cmd.prefix is not None:
        pre = cmd.prefix.rstrip("/")
        base = {k: v.replace("/@PREFIX@", pre) for k, v in facts.prefix_scheme.items()}
    else:
        base = facts.scheme
    return {k: v.replace("@DIST@", dist) for k, v in base.items()}


def _host_env(run_env: Mapping[str, str], cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in _HOST_PIP_KEEP}
    # the host's pip.conf (find-links, mirrors) is not the image's
    env["PIP_CONFIG_FILE"] = os.devnull
    env.setdefault("PIP_CERT", env.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    for k in _PIP_ENV_PASS:
        if k in run_env:
            env[k] = run_env[k]
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _execute_one(
    cmd: PipInstall,
    rootfs: Path,
    facts: TargetFacts,
    run_env: Mapping[str, str],
    workdir: str,
    cache_dir: Path,
    epoch: int | None,
) -> list[str]:
    for cfg in _IMAGE_PIP_CONFIGS:
        if resolve_in_root(rootfs, cfg).exists():
            raise NativePipUnavailable(f"the image has a pip configuration (/{cfg})")
    if facts.implementation != "cpython":
        raise NativePipUnavailable(f"the target python is {facts.implementation}")
    args: list[str] = []
    files = [("-r", f) for f in cmd.requirement_files] + [("-c", f) for f in cmd.constraint_files]
    for flag, f in files:
        host = resolve_in_root(rootfs, f if f.startswith("/") else f"{workdir.rstrip('/')}/{f}")
        problem = requirement_file_problem(host)
        if problem:
            raise NativePipUnavailable(problem)
        args += [flag, str(host)]
    args += list(cmd.requirements) + list(cmd.pip_options)
    if cmd.upgrade:
        args.append("--upgrade")
    if cmd.force_reinstall:
        args.append("--force-reinstall")
    if cmd.ignore_installed:
        args.append("--ignore-installed")
    scheme = _scheme_for(cmd, facts, "@DIST@")
    site_dirs = [scheme["purelib"], scheme["platlib"]]
    if cmd.user or cmd.prefix is None:
        site_dirs += [p for p in facts.path if p not in site_dirs]
    paths = [str(resolve_in_root(rootfs, p)) for p in dict.fromkeys(site_dirs)]
    with tempfile.TemporaryDirectory(prefix="manyarch-pip-") as tmp:
        t = Path(tmp)
        (t / "facts.json").write_text(json.dumps(facts.to_json()))
        (t / "paths.json").write_text(json.dumps(paths))
        report = t / "report.json"
        r = subprocess.run(
            [
                *_RUNNER,
                "resolve",
                str(t / "facts.json"),
                str(t / "paths.json"),
                str(report),
                *args,
            ],
            env=_host_env(run_env, cache_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if r.returncode != 0:
            raise NativePipUnavailable(_pip_failure(r.stdout.decode(errors="replace")))
        items = json.loads(report.read_text()).get("install", [])
        wheels = _fetch_wheels(
            items, cache_dir, _host_env(run_env, cache_dir), t / "dl", t / "facts.json"
        )
        _check_replacements(items, rootfs, scheme, facts, cmd)
        done: list[str] = []
        installed: list[_Installed] = []
        for item, wheel in zip(items, wheels, strict=True):
            meta = item["metadata"]
            _uninstall(meta["name"], rootfs, scheme)
            installed.append(
                _install_wheel(wheel, rootfs, cmd, facts, meta["name"], bool(item.get("requested")))
            )
            done.append(f"{meta['name']}=={meta['version']}")
    compile_off = run_env.get("PIP_NO_COMPILE", "").lower() in ("1", "true", "yes", "on")
    if cmd.compile and not compile_off:
        _compile(rootfs, facts, installed)
    return done


@dataclass
class _Installed:
    """What one wheel put in the image: its RECORD and its modules (image paths)."""

    record: str
    site: str
    modules: list[str] = field(default_factory=list)


def _compile(rootfs: Path, facts: TargetFacts, installed: Sequence[_Installed]) -> None:
    """Byte-compile the installed modules and list the pycs in each RECORD, as pip does.

    Without a host interpreter of the target's bytecode, nothing is compiled
    (Python compiles at first import, as with ``--no-compile``).
    """
    modules = [m for i in installed for m in i.modules]
    if not modules:
        return
    magic = None
    for entry in facts.path:
        magic = bytecode_magic(resolve_in_root(rootfs, entry))
        if magic is not None:
            break
    v = facts.version
    interp = host_python(f"python{v[0]}.{v[1]}", magic) if magic is not None else None
    if interp is None:
        return
    compile_tree(interp, rootfs, [resolve_in_root(rootfs, m) for m in modules])
    tag = f"{facts.implementation}-{v[0]}{v[1]}"
    for inst in installed:
        rows = []
        for m in inst.modules:
            d, name = posixpath.split(m)
            pyc = f"{d}/__pycache__/{name.removesuffix('.py')}.{tag}.pyc"
            if resolve_in_root(rootfs, pyc).is_file():
                rows.append(f"{posixpath.relpath(pyc, inst.site)},,\n")
        if rows:
            with open(resolve_in_root(rootfs, inst.record), "a", newline="") as f:
                f.write("".join(rows))


def _pip_failure(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in lines:
        if "No matching distribution found" in ln or "Could not find a version" in ln:
            return ln.removeprefix("ERROR: ") + " as a wheel for the target"
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    return (errors[-1] if errors else (lines[-1] if lines else "pip failed")).removeprefix(
        "ERROR: "
    )


def wheel_cache_dir(cache_dir: Path) -> Path:
    """Where downloaded wheels are kept, by sha256."""
    return cache_dir / "wheels"


def _fetch_wheels(
    items: Sequence[Mapping[str, Any]],
    cache_dir: Path,
    env: Mapping[str, str],
    dl: Path,
    facts_file: Path,
) -> list[Path]:
    out: list[Path | None] = []
    missing: list[tuple[int, str, str]] = []
    for n, item in enumerate(items):
        info = item.get("download_info") or {}
        url = str(info.get("url", ""))
        sha = (info.get("archive_info") or {}).get("hashes", {}).get("sha256") or ""
        name = url.rsplit("/", 1)[-1].split("#", 1)[0]
        if not name.endswith(".whl") or not sha:
            raise NativePipUnavailable(f"{item['metadata']['name']} has no wheel for the target")
        cached = wheel_cache_dir(cache_dir) / sha / name
        out.append(cached if cached.exists() else None)
        if not cached.exists():
            missing.append((n, url, sha))
    if missing:
        dl.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            [*_RUNNER, "download", str(facts_file)]
            + ["--no-deps", "--quiet", "-d", str(dl)]
            + [f"{Path(u.split('#', 1)[0]).name.split('-')[0]} @ {u}" for _, u, _ in missing],
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if r.returncode != 0:
            raise BuildError(
                f"native pip: downloading wheels failed: {_pip_failure(r.stdout.decode())}",
                "check the network, or build without native pip",
            )
        for n, url, sha in missing:
            name = url.rsplit("/", 1)[-1].split("#", 1)[0]
            got = dl / name
            if not got.exists() or file_digest(got) != sha:
                raise BuildError(f"native pip: {name} did not download as announced")
            dest = wheel_cache_dir(cache_dir) / sha / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(got, dest.with_suffix(".tmp"))
            os.replace(dest.with_suffix(".tmp"), dest)
            out[n] = dest
    return [p for p in out if p is not None]


def _installed(rootfs: Path, dirs: Sequence[str]) -> dict[str, Path]:
    from packaging.utils import canonicalize_name

    found: dict[str, Path] = {}
    for d in dirs:
        host = resolve_in_root(rootfs, d)
        if not host.is_dir():
            continue
        for info in sorted(host.iterdir()):
            if info.suffix in (".dist-info", ".egg-info"):
                name = info.name.rsplit("-", 1)[0] if "-" in info.stem else info.stem
                found.setdefault(str(canonicalize_name(name.split("-")[0])), info)
    return found


def _check_replacements(
    items: Sequence[Mapping[str, Any]],
    rootfs: Path,
    scheme: Mapping[str, str],
    facts: TargetFacts,
    cmd: PipInstall,
) -> None:
    from packaging.utils import canonicalize_name

    if cmd.ignore_installed:
        return
    ours = {scheme["purelib"], scheme["platlib"]}
    elsewhere = _installed(rootfs, [p for p in facts.path if p not in ours])
    for item in items:
        name = str(canonicalize_name(item["metadata"]["name"]))
        if name in elsewhere and not (elsewhere[name] / "RECORD").exists():
            raise NativePipUnavailable(
                f"{name} is installed outside pip's scheme ({elsewhere[name].parent}) "
                "without a RECORD"
            )


def _uninstall(name: str, rootfs: Path, scheme: Mapping[str, str]) -> None:
    from packaging.utils import canonicalize_name

    want = str(canonicalize_name(name))
    for d in dict.fromkeys((scheme["purelib"], scheme["platlib"])):
        site = resolve_in_root(rootfs, d)
        old = _installed(rootfs, [d]).get(want)
        if old is None:
            continue
        record = old / "RECORD"
        if record.exists():
            import csv

            with open(record, newline="") as f:
                for row in csv.reader(f):
                    if not row:
                        continue
                    p = (site / row[0]).resolve()
                    root = rootfs.resolve()
                    if root not in p.parents:
                        continue
                    if p.is_file() or p.is_symlink():
                        p.unlink()
                        pycache = p.parent / "__pycache__"
                        for pyc in pycache.glob(f"{p.stem}.*.pyc") if p.suffix == ".py" else []:
                            pyc.unlink()
        if old.exists():
            shutil.rmtree(old)
        for parent in sorted({p for p in site.rglob("*") if p.is_dir()}, reverse=True):
            if parent.name == "__pycache__" and not any(parent.iterdir()):
                parent.rmdir()


def _install_wheel(
    wheel: Path, rootfs: Path, cmd: PipInstall, facts: TargetFacts, name: str, requested: bool
) -> _Installed:
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.records import RecordEntry
    from installer.sources import WheelFile
    from installer.utils import Scheme

    done = _Installed("", "")

    class Destination(SchemeDictionaryDestination):
        """Notes the RECORD and the modules written, for one compile of every wheel's."""

        def finalize_installation(
            self,
            scheme: Scheme,
            record_file_path: str,
            records: Iterable[tuple[Scheme, RecordEntry]],
        ) -> None:
            entries = list(records)
            done.site = self.scheme_dict[scheme]
            done.record = f"{done.site}/{record_file_path}"
            done.modules = [
                posixpath.normpath(f"{self.scheme_dict[s]}/{r.path}")
                for s, r in entries
                if s in ("purelib", "platlib") and r.path.endswith(".py")
            ]
            super().finalize_installation(scheme, record_file_path, entries)

    scheme = _scheme_for(cmd, facts, name)
    dest = Destination(
        scheme,
        interpreter=facts.executable,
        script_kind="posix",
        bytecode_optimization_levels=(),
        destdir=str(rootfs),
    )
    extra = {"INSTALLER": b"pip\n"}
    if requested:
        extra["REQUESTED"] = b""
    # directories through image symlinks (/usr/local/bin -> ...) stay inside the root
    for k, v in scheme.items():
        host = resolve_in_root(rootfs, v)
        if host != rootfs / v.lstrip("/"):
            raise NativePipUnavailable(f"the image's {k} directory {v} is a symbolic link")
    with WheelFile.open(wheel) as source:
        install(source, dest, extra)
    return done
