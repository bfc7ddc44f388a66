"""Heredocs in RUN, COPY and ADD, as BuildKit's dockerfile2llb reads them (pure).

``RUN <<EOF`` alone: the document is the script; with a ``#!`` line it is a
file run as ``/dev/pipes/<name>`` (dispatchRun). Anything else around the
heredocs goes to the shell whole. ``COPY <<EOF /dest``: the document is a
source file named after its marker, its variables expanded unless the marker
is quoted, quotes kept as written (SourcesAndDest.ExpandRaw).
"""

from __future__ import annotations

from collections.abc import Callable

from manyarch.dockerfile.syntax import Heredoc, Instruction, _heredoc_marker, is_heredoc_marker

#: Where a RUN heredoc with a shebang is mounted, and run from (BuildKit's).
PIPES = "/dev/pipes"


def run_script(ins: Instruction) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A RUN's shell text with its heredocs, and the files a shebang heredoc becomes."""
    line = " ".join(ins.args)
    if is_heredoc_marker(line):
        doc = ins.heredocs[0]
        if doc.data.startswith("#!"):
            return f"{PIPES}/{doc.name}", ((doc.name, doc.data),)
        return doc.data, ()
    return line + "".join("\n" + h.content + h.name for h in ins.heredocs), ()


def copy_sources(
    ins: Instruction, expand_raw: Callable[[str], str]
) -> tuple[list[str], list[tuple[str, str]]]:
    """A COPY's words without its heredoc markers, and the heredocs as (name, content)."""
    docs: dict[str, Heredoc] = {h.name: h for h in ins.heredocs}
    words: list[str] = []
    inline: list[tuple[str, str]] = []
    for i, arg in enumerate(ins.args):
        marker = _heredoc_marker(arg)
        if marker is None or marker[0] not in docs:
            words.append(arg)
            continue
        if i == len(ins.args) - 1:
            raise ValueError("a heredoc cannot be the destination")
        name, _, expand = marker
        data = docs[name].data
        inline.append((name, expand_raw(data) if expand else data))
    return words, inline
