"""``--output`` as build and base read it: one parser, one set of rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch.cli.common import UsageError
from manyarch.cli.outputs import OutputSpec, outputs, parse_output
from manyarch.oci.reference import Reference
from manyarch.publish import (
    DockerArchive,
    LayoutDestination,
    OciArchive,
    RegistryDestination,
    StoreDestination,
)


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("type=registry", OutputSpec("registry")),
        ("type=registry,oci-mediatypes=true", OutputSpec("registry", {"oci-mediatypes": "true"})),
        ("type=image,name=r/x:1,push=true", OutputSpec("image", {"name": "r/x:1", "push": "true"})),
        ("type=oci,dest=out.tar", OutputSpec("oci", {"dest": "out.tar"})),
        ("type=docker,dest=/tmp/i.tar", OutputSpec("docker", {"dest": "/tmp/i.tar"})),
        ("outdir", OutputSpec("local", {"dest": "outdir"})),
    ],
)
def test_parse_output(text: str, spec: OutputSpec) -> None:
    assert parse_output(text) == spec


@pytest.mark.parametrize("text", ["type=cacheonly", "", "type=oci,dest", "dest=x"])
def test_parse_output_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_output(text)


def test_destinations_and_media_types() -> None:
    outs = outputs(
        ["type=oci,dest=dir", "type=oci,dest=a.tar", "type=oci,dest=b,tar=true"],
        ["r.example/app:v1", "r.example/app:v2"],
        push=True,
    )
    a, b = Reference.parse("r.example/app:v1"), Reference.parse("r.example/app:v2")
    assert outs.destinations == [
        # the first name kept whole, as buildx keeps it (io.containerd.image.name)
        LayoutDestination(Path("dir"), "v1", "r.example/app:v1"),
        OciArchive(Path("a.tar"), "v1", "r.example/app:v1"),
        OciArchive(Path("b"), "v1", "r.example/app:v1"),
        RegistryDestination(a),
        RegistryDestination(b),
    ]
    assert outs.media_types is None and outs.names == [a, b]
    named = outputs(["type=image,name=r/x:1,push=true,oci-mediatypes=true"], [], push=False)
    assert named.destinations == [RegistryDestination(Reference.parse("r/x:1"))]
    assert named.media_types == "oci"
    docker = outputs(["type=docker,dest=d.tar"], ["demo:1"], push=False)
    assert docker.destinations == [DockerArchive(Path("d.tar"), (Reference.parse("demo:1"),))]
    # docker's --load (type=docker without dest): the local store, named by every name
    demo = (Reference.parse("demo:1"),)
    for loaded in (
        outputs(["type=docker"], ["demo:1"], push=False),
        outputs([], ["demo:1"], push=False, load=True),
    ):
        assert loaded.destinations == [StoreDestination(demo)]


@pytest.mark.parametrize(
    ("texts", "push", "words"),
    [
        ([], True, "--push needs a name"),
        (["type=local,dest=x"], False, "cannot write --output type=local"),
        (["type=tar,dest=x.tar"], False, "cannot write --output type=tar"),
        (["type=oci"], False, "type=oci needs dest"),
        (["type=docker,dest=-"], False, "type=docker needs dest"),
        (["type=image,name=r/x:1"], False, "push=true"),
    ],
)
def test_usage_errors(texts: list[str], push: bool, words: str) -> None:
    with pytest.raises(UsageError) as e:
        outputs(texts, [], push=push)
    assert words in str(e.value) + str(e.value.hint)
