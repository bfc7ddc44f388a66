"""What COPY and ADD may name as sources, as BuildKit's instructions package checks it
(pure): URLs and Git repositories for ADD only, ``--checksum`` for those only,
``--parents`` without a ``/./`` pivot (manyarch)."""

from __future__ import annotations

from manyarch.dockerfile.values import is_git_url, is_remote, is_url


def unpack_archives(is_add: bool, unpack: str | None, sources: list[str]) -> bool:
    """Whether ADD unpacks its archives: local ones by default, a download never unless
    ``--unpack`` (BuildKit's ``ADD --unpack``); ``--unpack=false`` keeps them all."""
    if not is_add:
        return False
    if unpack is not None:
        return unpack == "true"
    return not any(map(is_remote, sources))


def source_problem(
    cmd: str, sources: list[str], checksum: str | None, parents: bool
) -> tuple[str, str | None] | None:
    """(message, hint) when the sources cannot be copied, else None."""
    urls = [s for s in sources if is_url(s) or is_git_url(s)]
    for src in sources:
        if ("://" in src and src not in urls) or (src in urls and cmd != "ADD"):
            return f"source can't be a URL for {cmd}: {src}", None
    if checksum is not None and len(urls) != len(sources):
        return "checksum can't be specified for non-HTTP(S) sources", None
    if parents and any("/./" in f"/{s}" for s in sources):
        return (
            f"{cmd} --parents with a /./ pivot is not supported by manyarch",
            "write the path to keep from the context's (or the stage's) root",
        )
    return None
