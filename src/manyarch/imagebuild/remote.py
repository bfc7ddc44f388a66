"""``ADD <url>``: a file fetched over HTTP(S), as BuildKit's ``llb.HTTP`` source fetches it,
or a Git repository checked out (BuildKit's ``llb.Git``).

The file is named after the URL's last path segment (``__unnamed__`` when it
has none), mode 0600 unless ``--chmod``, its mtime the response's
``Last-Modified``; it is never unpacked. ``--checksum=sha256:<hex>`` is
verified before anything is written into the image. The host fetches it (the
host's CAs, its proxies), not the sandbox.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import posixpath
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from manyarch.errors import BuildError, ToolMissing
from manyarch.registry.transport import system_ssl_context
from manyarch.sandbox.rootpath import resolve_in_root

_CHECKSUM = re.compile(r"^sha256:[0-9a-f]{64}$")


def check_checksum(checksum: str) -> None:
    """Refuse what BuildKit refuses: only ``sha256:<64 hex>``."""
    if not _CHECKSUM.match(checksum):
        raise BuildError(
            f"invalid checksum {checksum!r}", "write --checksum=sha256:<64 hex digits>"
        )


def file_name(url: str) -> str:
    """The name the file lands under: the URL path's last segment."""
    name = posixpath.basename(urlsplit(url).path)
    return name if name not in ("", ".", "..", "/") else "__unnamed__"


def fetch(url: str, where: Path, checksum: str | None = None) -> Path:
    """Download ``url`` into ``where`` (a new directory of the build's); returns the file."""
    if checksum is not None:
        check_checksum(checksum)
    where.mkdir(parents=True, exist_ok=True)
    path = where / file_name(url)
    h = hashlib.sha256()
    try:
        with (
            httpx.Client(verify=system_ssl_context(), follow_redirects=True, timeout=60) as c,
            c.stream("GET", url) as r,
        ):
            if r.status_code != 200:
                raise BuildError(f"ADD {url}: the server answered {r.status_code}")
            with open(path, "wb") as f:
                for chunk in r.iter_bytes():
                    h.update(chunk)
                    f.write(chunk)
            modified = r.headers.get("last-modified")
    except httpx.HTTPError as e:
        raise BuildError(f"ADD {url}: {e}") from e
    if checksum is not None and f"sha256:{h.hexdigest()}" != checksum:
        raise BuildError(
            f"ADD {url}: digest mismatch: got sha256:{h.hexdigest()}, --checksum says {checksum}"
        )
    os.chmod(path, 0o600)
    if modified:
        try:
            t = int(email.utils.parsedate_to_datetime(modified).timestamp())
            os.utime(path, (t, t))
        except (TypeError, ValueError):
            pass
    return path


def fetch_git(url: str, where: Path, checksum: str | None, keep_git_dir: bool) -> Path:
    """``ADD <git URL>[#REF[:SUBDIR]]`` (or ``?ref=&subdir=&commit=&keep-git-dir=``): the
    repository checked out at REF (the default branch without one) in ``where``; the
    directory ADD copies (``SUBDIR`` of it).

    BuildKit's ``--checksum`` here is the commit the ref must resolve to (a prefix of
    it will do); ``.git`` is kept only with ``--keep-git-dir``.
    """
    base, _, fragment = url.partition("#")
    repo, _, query = base.partition("?")  # BuildKit's ?ref=|tag=|branch=|commit=&subdir=
    q = {k: v[-1] for k, v in parse_qs(query).items()}
    ref, _, subdir = fragment.partition(":")
    pinned = q.get("commit")
    ref = ref or q.get("ref") or q.get("tag") or q.get("branch") or pinned or ""
    subdir = subdir or q.get("subdir", "")
    keep_git_dir = keep_git_dir or q.get("keep-git-dir") == "true"
    dest = where / "repo"
    where.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}

    def git(*args: str, cwd: Path | None = None) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True,
                                  text=True, check=True, timeout=600)  # fmt: skip
        except FileNotFoundError as e:
            raise ToolMissing("git", "git") from e
        except subprocess.CalledProcessError as e:
            raise BuildError(f"ADD {url}: git {args[0]} failed: {e.stderr.strip()}") from e
        return done.stdout.strip()

    git("clone", "--quiet", "--no-checkout", repo, str(dest))
    try:
        git("checkout", "--quiet", "--detach", ref or "HEAD", cwd=dest)
    except BuildError:  # a branch other than the default one: the remote's
        git("checkout", "--quiet", "--detach", f"origin/{ref}", cwd=dest)
    commit = git("rev-parse", "HEAD", cwd=dest)
    for want in (checksum, pinned):
        if want is not None and not commit.startswith(want.removeprefix("sha1:")):
            raise BuildError(f"ADD {url}: expected checksum to match {want}, got {commit}")
    if not keep_git_dir:
        shutil.rmtree(dest / ".git")
    out = resolve_in_root(dest, subdir) if subdir else dest
    if not out.is_dir():
        raise BuildError(f"ADD {url}: {subdir} is not a directory of the repository")
    return out
