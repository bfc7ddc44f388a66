"""What ``pip install`` and ``pip wheel`` lines share: the line read, its requirements, its sdists.

The options as the image's pip reads them (the fast path for plain
spellings, else the image's own parser), the requirement words sorted into
names on an index and project directories, the names a requirement file
lists (for ``REQUESTED`` and pip's order), and the sdists of a resolution
built into wheels for the target (:mod:`.build`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manyarch.imagebuild.nativepip.build import Built, build_wheel
from manyarch.imagebuild.nativepip.command import (
    NativePipUnavailable,
    PipCommand,
    expand_words,
    image_path,
)
from manyarch.imagebuild.nativepip.pipoptions import (
    PipOptions,
    fast_pip_options,
    parse_pip_options,
)
from manyarch.imagebuild.nativepip.place import canonical
from manyarch.imagebuild.nativepip.resolve import Resolved, ResolveRequest, fetch, resolve
from manyarch.imagebuild.nativepip.target import TargetFacts
from manyarch.sandbox.rootpath import resolve_in_root

#: pip.conf files the image's pip reads (global, user, site).
_CONFIGS = ("/etc/pip.conf", "/etc/xdg/pip/pip.conf")


def read_options(
    cmd: PipCommand,
    facts: TargetFacts,
    rootfs: Path,
    env: Mapping[str, str],
    workdir: str,
    cache_dir: Path,
    home: str,
) -> PipOptions:
    """``cmd``'s options as the image's pip reads them (``pip install`` or ``pip wheel``)."""
    if not facts.pip_version:
        raise NativePipUnavailable(f"the image's {facts.executable} has no pip")
    args = expand_words(cmd.args, rootfs, workdir)
    prefix = facts.venv or facts.base_prefix
    confs = [*_CONFIGS, f"{home}/.pip/pip.conf", f"{home}/.config/pip/pip.conf"]
    confs.append(f"{prefix}/pip.conf")
    exists = any(resolve_in_root(rootfs, c).exists() for c in confs)
    fast = fast_pip_options(facts.pip_version, args, env, exists, command=cmd.action)
    if fast is not None:
        return fast
    pip_site = next(
        d for d in facts.site_dirs if any(resolve_in_root(rootfs, d).glob("pip-*.dist-info"))
    )
    return parse_pip_options(
        rootfs, pip_site, prefix, home, args, env, cache_dir=cache_dir, command=cmd.action
    )


def check_formats(opts: PipOptions) -> list[str]:
    """Refuse options not done natively and forced source builds; ``--only-binary``'s value."""
    bad = opts.unhandled
    if bad:
        raise NativePipUnavailable(f"pip option {bad[0]} is not done natively")
    fc = opts.get("format_control", {"no_binary": [], "only_binary": []})
    if fc.get("no_binary"):
        raise NativePipUnavailable("--no-binary: pip builds from source")
    only: list[str] = list(fc.get("only_binary", []))
    if only and only != [":all:"]:
        raise NativePipUnavailable(f"--only-binary {','.join(only)}")
    if opts.get("editables"):
        raise NativePipUnavailable("-e: an editable install")
    return only


def sort_args(args: Sequence[str], rootfs: Path, workdir: str) -> tuple[list[str], list[str]]:
    """Requirements on an index, and project directories (image paths) to build."""
    requirements: list[str] = []
    projects: list[str] = []
    for a in args:
        if "://" in a or "@" in a:
            raise NativePipUnavailable(f"{a} is a URL, not a name on an index")
        if a.endswith(".whl") or a.startswith((".", "/")) or "/" in a:
            path = image_path(a, workdir)
            if not resolve_in_root(rootfs, path).is_dir():
                raise NativePipUnavailable(f"{a} is a file, not a name on an index")
            projects.append(path)
        else:
            requirements.append(a)
    return requirements, projects


def build_project(project: str, facts: TargetFacts, rootfs: Path, cache: Path, work: Path) -> Built:
    """``pip install DIR`` (or ``pip wheel DIR``): the project built in its tree, as pip does."""
    host = resolve_in_root(rootfs, project)
    return build_wheel(host, facts, rootfs, cache_dir=cache, tmp=work, in_tree=True)


def build_sdists(
    resolved: Sequence[Resolved],
    wheels: list[Path],
    opts: PipOptions,
    only_binary: bool,
    facts: TargetFacts,
    rootfs: Path,
    cache_dir: Path,
    work: Path,
) -> None:
    """Replace each resolved sdist in ``wheels`` by the wheel built from it for the target."""
    for n, r in enumerate(resolved):
        if not r.sdist:
            continue
        if opts.get("cache_dir") is not False:
            raise NativePipUnavailable(
                f"{r.name} {r.version} is an sdist and pip would keep the wheel it builds in "
                "its cache (the image's ~/.cache/pip)"
            )
        if only_binary:
            raise NativePipUnavailable(f"{r.name} {r.version} has no wheel (--only-binary)")
        b = build_wheel(wheels[n], facts, rootfs, cache_dir=cache_dir, tmp=work, in_tree=False)
        wheels[n] = b.wheel


def in_rootfs(rootfs: Path, path: str, workdir: str) -> Path:
    """The host path of an image path the line names; it must exist."""
    host = resolve_in_root(rootfs, image_path(path, workdir))
    if not host.exists():
        raise NativePipUnavailable(f"{path} is not in the image")
    return host


def pins(requirements: Sequence[str]) -> dict[str, str] | None:
    """``{name: version}`` when every requirement is ``name==version`` (no marker), else None."""
    from packaging.requirements import InvalidRequirement, Requirement

    pins: dict[str, str] = {}
    for r in requirements:
        try:
            req = Requirement(r)
        except InvalidRequirement:
            return None
        specs = list(req.specifier)
        if req.marker is not None or req.extras or len(specs) != 1:
            return None
        spec = specs[0]
        if spec.operator not in ("==", "===") or "*" in spec.version:
            return None
        pins[canonical(req.name)] = spec.version
    return pins or None


def requirement_name(requirement: str) -> str:
    """The project name of a requirement (the text itself when it does not parse)."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(requirement).name
    except InvalidRequirement:
        return requirement


def requirement_names(path: Path, rootfs: Path, seen: set[Path] | None = None) -> list[str]:
    """The requirements a file names (for REQUESTED and pip's install order); nested -r too."""
    from packaging.requirements import InvalidRequirement, Requirement

    seen = seen if seen is not None else set()
    if path in seen:
        return []
    seen.add(path)
    out: list[str] = []
    text = path.read_text(errors="replace").replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            opt, _, value = line.replace("=", " ", 1).partition(" ")
            value = value.strip()
            if opt in ("-r", "--requirement"):
                if value.startswith("/"):
                    raise NativePipUnavailable(f"{path.name} includes {value}")
                out += requirement_names(path.parent / value, rootfs, seen)
            elif opt in ("-e", "--editable"):
                raise NativePipUnavailable(f"{path.name} has an editable requirement (-e)")
            elif opt in ("--no-binary",):
                raise NativePipUnavailable(f"{path.name} has {opt}")
            continue
        req = line.split(" --hash", 1)[0].split("\t--hash", 1)[0].strip()
        try:
            parsed = Requirement(req)
        except InvalidRequirement as e:
            raise NativePipUnavailable(
                f"{path.name}: {req!r} is a path or URL, not a name on an index"
            ) from e
        if parsed.url:
            raise NativePipUnavailable(f"{path.name}: {req!r} is a direct URL")
        out.append(req)
    return out


@dataclass
class PipLine:
    """A pip line's requirements read: names on an index, files, the projects it builds."""

    opts: PipOptions
    only_binary: bool
    #: names on an index, the projects' own requirements with them
    requirements: list[str]
    req_files: list[Path]
    con_files: list[Path]
    #: what the line names (for ``REQUESTED``, pip's order and the pins)
    roots: list[str]
    #: ``--find-links``: URLs or host paths
    links: list[str]
    #: the projects the line names, built, and their image paths
    built: list[tuple[Built, str]] = field(default_factory=list)

    def request(self, **kw: Any) -> ResolveRequest:
        """The resolution the line asks, with what only the command decides (``kw``)."""
        return ResolveRequest(
            requirements=self.requirements,
            requirement_files=self.req_files,
            constraint_files=self.con_files,
            index_url=self.opts.get("index_url"),
            extra_index_urls=list(self.opts.get("extra_index_urls", [])),
            no_index=bool(self.opts.get("no_index")),
            find_links=self.links,
            pre=bool(self.opts.get("pre")),
            no_deps=bool(self.opts.get("ignore_dependencies")),
            only_binary=self.only_binary,
            require_hashes=bool(self.opts.get("require_hashes")),
            **kw,
        )

    def resolve(
        self, request: ResolveRequest, facts: TargetFacts, rootfs: Path, cache: Path, work: Path
    ) -> list[Resolved]:
        """uv's resolution of ``request`` (nothing when only projects without requirements)."""
        if not (self.requirements or self.req_files):
            return []
        return resolve(request, facts, cache_dir=cache, tmp=work, rootfs=rootfs)

    def fetch(
        self,
        resolved: list[Resolved],
        facts: TargetFacts,
        rootfs: Path,
        cache: Path,
        work: Path,
    ) -> tuple[list[Path], dict[int, str]]:
        """The wheels of ``resolved`` (sdists built), the projects' appended to both lists;
        the ``direct_url.json`` of each project's wheel, by index."""
        wheels = fetch(resolved, cache)
        build_sdists(resolved, wheels, self.opts, self.only_binary, facts, rootfs, cache, work)
        direct: dict[int, str] = {}
        for b, project in self.built:
            url = {"dir_info": {}, "url": f"file://{project}"}
            direct[len(resolved)] = json.dumps(url, sort_keys=True)  # pip's DirectUrl.to_json
            resolved.append(Resolved(b.name, "", "", "", b.wheel.name))
            wheels.append(b.wheel)
        return wheels, direct


def read_line(
    opts: PipOptions,
    only_binary: list[str],
    facts: TargetFacts,
    rootfs: Path,
    workdir: str,
    cache: Path,
    work: Path,
) -> PipLine:
    """The line's requirements, files and links; the projects it names built for the target."""
    requirements, projects = sort_args(opts.args, rootfs, workdir)
    built = [(build_project(p, facts, rootfs, cache, work), p) for p in projects]
    # a project's own requirements are resolved with the rest, but are not requested:
    # pip reaches them through the project
    project_deps = [r for b, _ in built for r in b.requires if "extra" not in r.partition(";")[2]]
    req_files = [in_rootfs(rootfs, f, workdir) for f in opts.get("requirements", [])]
    con_files = [in_rootfs(rootfs, f, workdir) for f in opts.get("constraints", [])]
    roots = list(requirements) + [b.name for b, _ in built]
    for f in req_files:
        roots += requirement_names(f, rootfs)
    if not roots:
        raise NativePipUnavailable("nothing to install")
    links = [
        x if "://" in x else str(in_rootfs(rootfs, x, workdir)) for x in opts.get("find_links", [])
    ]
    return PipLine(
        opts, bool(only_binary), requirements + project_deps, req_files, con_files, roots, links,
        built,
    )  # fmt: skip
