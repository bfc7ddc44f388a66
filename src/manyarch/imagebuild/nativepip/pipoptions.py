"""A ``pip install`` (or ``pip wheel``) command line read by the image's own pip, as it reads it.

Option prefixes (``--no-cache``), ``--opt=value``, ``-rFILE``, the step's
``PIP_*`` variables and the image's pip.conf files mean exactly what they
mean to the pip that would run under emulation, because that pip's parser
reads them: its package is imported by a host Python in a sandbox
(:func:`manyarch.sandbox.host.run_host_tool`; the image's code never runs
on the host itself), its configuration files redirected into the rootfs.
What differs from a bare ``pip install`` comes back as :class:`PipOptions`.
Results are cached by everything they depend on.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manyarch.imagebuild.nativepip.command import NativePipUnavailable
from manyarch.sandbox.rootpath import resolve_in_root

_VERSION = 2

#: Runs in the sandbox: ROOT SITE PREFIX HOME COMMAND ARGS-JSON; prints the parsed options.
_PARSER = r"""
import json, os, sys
root, site, prefix, home, command, args = sys.argv[1:7]
sys.path.insert(0, root + site)
import pip
import pip._internal.configuration as cfg
from pip._internal.configuration import kinds
def files():
    xdg = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    glob = [d + "/pip/pip.conf" for d in xdg.split(":") if d] + ["/etc/pip.conf"]
    return {kinds.GLOBAL: [root + f for f in glob],
            kinds.USER: [root + home + "/.pip/pip.conf", root + home + "/.config/pip/pip.conf"],
            kinds.SITE: [root + prefix + "/pip.conf"]}
cfg.get_configuration_files = files
if os.environ.get("PIP_CONFIG_FILE") not in (None, os.devnull):
    os.environ["PIP_CONFIG_FILE"] = root + os.environ["PIP_CONFIG_FILE"]
from pip._internal.commands import create_command
def parse(argv):
    cmd = create_command(command)
    opts, rest = cmd.parse_args(argv)
    out = {}
    for k, v in vars(opts).items():
        if k == "format_control" and v is not None:
            v = {"no_binary": sorted(v.no_binary), "only_binary": sorted(v.only_binary)}
        elif isinstance(v, (set, frozenset, tuple)):
            v = sorted(v)
        out[k] = v
    return out, rest
try:
    got, rest = parse(json.loads(args))
except SystemExit as e:
    print(json.dumps({"error": "pip refuses the command line (exit %s)" % e.code}))
    raise SystemExit(0)
saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("PIP_")}
cfg.get_configuration_files = lambda: {kinds.GLOBAL: [], kinds.USER: [], kinds.SITE: []}
bare, _ = parse([])
print(json.dumps({"pip": pip.__version__, "args": rest, "options": got,
                  "changed": sorted(k for k in got if got[k] != bare.get(k))}, default=str))
"""

#: What pip's options change that does not reach the image (or is the host's business).
NEUTRAL = frozenset(
    [
        "verbose",
        "quiet",
        "log",
        "no_input",
        "proxy",
        "retries",
        "timeout",
        "exists_action",
        "cert",
        "client_cert",
        "cache_dir",
        "disable_pip_version_check",
        "no_color",
        "progress_bar",
        "root_user_action",
        "warn_script_location",
        "warn_about_conflicts",
        "isolated_mode",
        "keyring_provider",
        "use_pep517",
        "build_isolation",
        "check_build_deps",
        "no_clean",
        "src_dir",
        "no_python_version_warning",
        "debug_mode",
        "trusted_hosts",
        "deprecated_features_enabled",
        "features_enabled",
        "help",
        "require_venv",
    ]
)
#: What the native install handles itself.
HANDLED = frozenset(
    [
        "requirements",
        "constraints",
        "editables",
        "index_url",
        "extra_index_urls",
        "no_index",
        "find_links",
        "pre",
        "no_deps",
        "upgrade",
        "upgrade_strategy",
        "force_reinstall",
        "ignore_installed",
        "use_user_site",
        "target_dir",
        "prefix_path",
        "compile",
        "require_hashes",
        "format_control",
        "prefer_binary",
        "override_externally_managed",
        "ignore_dependencies",
        "wheel_dir",
    ]
)


@dataclass(frozen=True)
class PipOptions:
    """What one ``pip install`` asks, as the image's pip understood it."""

    pip_version: str
    args: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    changed: frozenset[str] = frozenset()

    def get(self, name: str, default: Any = None) -> Any:
        """An option's value (pip's ``dest`` name)."""
        v = self.options.get(name, default)
        return default if v is None else v

    @property
    def unhandled(self) -> list[str]:
        """Options given that the native install does not do."""
        return sorted(self.changed - NEUTRAL - HANDLED)


def parse_pip_options(
    rootfs: Path,
    pip_site: str,
    prefix: str,
    home: str,
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    cache_dir: Path,
    command: str = "install",
) -> PipOptions:
    """Parse ``pip COMMAND ARGS`` (``install``, ``wheel``) with the image's pip (in ``pip_site``),
    cached."""
    confs = [
        f"{c}"
        for c in (
            "/etc/pip.conf",
            "/etc/xdg/pip/pip.conf",
            f"{home}/.pip/pip.conf",
            f"{home}/.config/pip/pip.conf",
            f"{prefix}/pip.conf",
            env.get("PIP_CONFIG_FILE", ""),
        )
        if c
    ]
    run_env = {k: v for k, v in env.items() if k.startswith("PIP_") or k == "XDG_CONFIG_DIRS"}
    h = hashlib.sha256()
    parts = [str(_VERSION), pip_site, prefix, home, command, json.dumps(list(args))]
    parts.append(json.dumps(run_env))
    for part in parts:
        h.update(part.encode() + b"\0")
    record = resolve_in_root(rootfs, pip_site)
    for info in sorted(record.glob("pip-*.dist-info")):
        h.update(_read(info / "RECORD"))
    for c in confs:
        h.update(c.encode() + b"\0" + _read(resolve_in_root(rootfs, c)))
    key = cache_dir / "pipoptions" / f"{h.hexdigest()}.json"
    try:
        data = json.loads(key.read_text())
    except (OSError, ValueError):
        data = _run_parser(rootfs, pip_site, prefix, home, [command, *args], run_env)
        key.parent.mkdir(parents=True, exist_ok=True)
        tmp = key.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, key)
    if "error" in data:
        raise NativePipUnavailable(str(data["error"]))
    return PipOptions(
        pip_version=str(data["pip"]),
        args=tuple(data["args"]),
        options=dict(data["options"]),
        changed=frozenset(data["changed"]),
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _run_parser(
    rootfs: Path,
    pip_site: str,
    prefix: str,
    home: str,
    command_args: Sequence[str],
    env: Mapping[str, str],
) -> dict[str, Any]:
    from manyarch.sandbox.host import run_host_tool

    root = rootfs.resolve()
    command, *args = command_args
    argv = [sys.executable, "-I", "-S", "-c", _PARSER, str(root), pip_site, prefix, home, command]
    r = run_host_tool(
        [*argv, json.dumps(args)],
        env={**env, "PYTHONDONTWRITEBYTECODE": "1"},
        readonly=[root],
    )
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        raise NativePipUnavailable(
            f"the image's pip cannot be read on the host ({err[-1] if err else r.returncode})"
        )
    out = r.stdout.decode().strip().splitlines()
    result: dict[str, Any] = json.loads(out[-1])
    return result


#: Exact option spellings (pip >= 23.0.1) the fast path reads without the image's
#: pip: option -> (dest, kind). An exact name is never ambiguous in optparse.
_EXACT: dict[str, tuple[str, str]] = {
    "-r": ("requirements", "append"),
    "--requirement": ("requirements", "append"),
    "-c": ("constraints", "append"),
    "--constraint": ("constraints", "append"),
    "-i": ("index_url", "store"),
    "--index-url": ("index_url", "store"),
    "--extra-index-url": ("extra_index_urls", "append"),
    "-f": ("find_links", "append"),
    "--find-links": ("find_links", "append"),
    "--prefix": ("prefix_path", "store"),
    "-t": ("target_dir", "store"),
    "--target": ("target_dir", "store"),
    "--upgrade-strategy": ("upgrade_strategy", "store"),
    "--root-user-action": ("root_user_action", "store"),
    "--progress-bar": ("progress_bar", "store"),
    "--cache-dir": ("cache_dir", "store"),
    "--timeout": ("timeout", "store"),
    "--retries": ("retries", "store"),
    "--no-cache-dir": ("cache_dir", "flag:false"),
    "-q": ("quiet", "count"),
    "--quiet": ("quiet", "count"),
    "-v": ("verbose", "count"),
    "--verbose": ("verbose", "count"),
    "-U": ("upgrade", "flag:true"),
    "--upgrade": ("upgrade", "flag:true"),
    "--no-deps": ("ignore_dependencies", "flag:true"),
    "--user": ("use_user_site", "flag:true"),
    "--pre": ("pre", "flag:true"),
    "--no-index": ("no_index", "flag:true"),
    "--no-compile": ("compile", "flag:false"),
    "--compile": ("compile", "flag:true"),
    "--force-reinstall": ("force_reinstall", "flag:true"),
    "-I": ("ignore_installed", "flag:true"),
    "--ignore-installed": ("ignore_installed", "flag:true"),
    "--disable-pip-version-check": ("disable_pip_version_check", "flag:true"),
    "--break-system-packages": ("override_externally_managed", "flag:true"),
    "--no-warn-script-location": ("warn_script_location", "flag:false"),
    "--no-warn-conflicts": ("warn_about_conflicts", "flag:false"),
    "--prefer-binary": ("prefer_binary", "flag:true"),
    "--require-hashes": ("require_hashes", "flag:true"),
    "--no-input": ("no_input", "flag:true"),
    "--no-color": ("no_color", "flag:true"),
    "-w": ("wheel_dir", "store"),
    "--wheel-dir": ("wheel_dir", "store"),
}
#: What only ``pip install`` has (``pip wheel`` refuses it), and only ``pip wheel``.
_INSTALL_ONLY = frozenset(
    ["--prefix", "-t", "--target", "--upgrade-strategy", "--root-user-action", "-U", "--upgrade",
     "--user", "--no-compile", "--compile", "--force-reinstall", "-I", "--ignore-installed",
     "--break-system-packages", "--no-warn-script-location", "--no-warn-conflicts"]
)  # fmt: skip
_WHEEL_ONLY = frozenset(["-w", "--wheel-dir"])
_TRUE = {"1", "y", "yes", "t", "true", "on"}
_FALSE = {"0", "n", "no", "f", "false", "off"}
#: PIP_* variables whose value cannot change what lands, when pip accepts it.
_ENV_BOOL = {
    "PIP_DISABLE_PIP_VERSION_CHECK": "disable_pip_version_check",
    "PIP_NO_CACHE_DIR": "cache_dir",
    "PIP_BREAK_SYSTEM_PACKAGES": "override_externally_managed",
    "PIP_NO_INPUT": "no_input",
    "PIP_NO_WARN_SCRIPT_LOCATION": "warn_script_location",
}
_ENV_VALUE = {"PIP_ROOT_USER_ACTION": {"warn", "ignore"}, "PIP_PROGRESS_BAR": {"on", "off"}}


def _env_options(env: Mapping[str, str], options: dict[str, Any], changed: set[str]) -> bool:
    """The step's ``PIP_*`` variables into ``options`` and ``changed``; False for one that
    could change what lands (or a value pip would refuse): the image's pip reads the line."""
    for k, v in env.items():
        if not k.startswith("PIP_"):
            continue
        if k in _ENV_BOOL and v.lower() in _TRUE:
            dest = _ENV_BOOL[k]
            changed.add(dest)
            if dest == "override_externally_managed":
                options[dest] = True
        elif k in _ENV_VALUE and v in _ENV_VALUE[k]:
            changed.add(k[4:].lower())
        elif k == "PIP_DEFAULT_TIMEOUT" and v.replace(".", "", 1).isdigit():
            changed.add("timeout")
        elif k == "PIP_CERT" and v.startswith("/"):  # the builder's CA bundle for the step
            changed.add("cert")
        else:
            return False
    return True


def fast_pip_options(
    pip_version: str,
    args: Sequence[str],
    env: Mapping[str, str],
    configs_exist: bool,
    *,
    command: str = "install",
) -> PipOptions | None:
    """The options of a plainly spelled line without asking the image's pip, else None.

    Only exact spellings of a known option set, only ``PIP_*`` variables
    whose values pip accepts and that change nothing that lands, and no
    pip.conf in the image: anything else goes to :func:`parse_pip_options`.
    ``command`` is ``install`` or ``wheel``: an option of the other is left
    to the image's pip, which refuses it.
    """
    from packaging.version import InvalidVersion, Version

    try:
        if not Version("23.0.1") <= Version(pip_version) < Version("27"):
            return None
    except InvalidVersion:
        return None
    if configs_exist or "PIP_CONFIG_FILE" in env:
        return None
    options: dict[str, Any] = {}
    changed: set[str] = set()
    if not _env_options(env, options, changed):
        return None
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest += args[i + 1 :]
            break
        if not a.startswith("-") or a == "-":
            rest.append(a)
            i += 1
            continue
        name, eq, inline = a.partition("=") if a.startswith("--") else (a, "", "")
        if (
            name not in _EXACT
            and not a.startswith("--")
            and a[:2] in ("-r", "-c", "-f", "-i", "-w")
        ):
            name, inline, eq = a[:2], a[2:], "="
        if a in ("-qq", "-qqq", "-vv"):
            name = a[:2]
        if name not in _EXACT or name in (_WHEEL_ONLY if command == "install" else _INSTALL_ONLY):
            return None
        dest, kind = _EXACT[name]
        changed.add(dest)
        if kind in ("store", "append"):
            if eq:
                value = inline
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                return None
            if kind == "append":
                options.setdefault(dest, []).append(value)
            else:
                options[dest] = value
        elif eq:
            return None
        elif kind == "flag:true":
            options[dest] = True
        elif kind == "flag:false":
            options[dest] = False
        i += 1
    return PipOptions(pip_version, tuple(rest), options, frozenset(changed))
