"""What a RUN step sees around its command, as BuildKit's sandbox shows it: the image's
own /tmp, and the build host's CAs trusted without ever reaching a layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from manyarch.errors import BuildError
from manyarch.imagebuild import hostca
from manyarch.oci.platform import Platform
from tests.helpers.tiny_base import TinyBase, tiny_base
from tests.imagebuild.build_helpers import make_context, run_build

__all__ = ["tiny_base"]

AMD64 = (Platform.parse("linux/amd64"),)
BUNDLE = "etc/ssl/certs/ca-certificates.crt"
HOST_LINE = "TUFOWUFSQ0hIT1NUQ0E="
HOST_CA = f"-----BEGIN CERTIFICATE-----\n{HOST_LINE}\n-----END CERTIFICATE-----\n"


#: every test here builds in a store and work dir of its own (see conftest)
pytestmark = pytest.mark.usefixtures("isolated_build")


def test_tmp_is_the_images_and_kept_between_runs(tmp_path: Path, tiny_base: TinyBase) -> None:
    # BuildKit's testAddURLChmod (ADD to /tmp, stat it in the next RUN): executor/oci
    # mounts nothing on /tmp, so a non-root RUN sees the image's /tmp (1777 root here)
    df = """\
ARG BASE
FROM $BASE
COPY requirements.txt /tmp/
RUN echo kept > /tmp/x
USER app
RUN cat /tmp/requirements.txt /tmp/x; stat -c '%a %u' /tmp
"""
    ctx = make_context(tmp_path, df, {"requirements.txt": "flask\n"})
    built = run_build(ctx, tiny_base.ref, AMD64)
    assert built.output("linux/amd64") == ["flask", "kept", "1777 0"]
    assert built.layer("linux/amd64", -1)["tmp/x"][1] == b"kept\n"


def test_host_cas_trusted_the_images_bundle_writable_and_kept(
    tmp_path: Path, tiny_base: TinyBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # BuildKit has no such test (its sandbox trusts the image's store alone); the image's
    # bundle behaves as under BuildKit: writable, a RUN's changes to it kept
    host = tmp_path / "host-ca.crt"
    host.write_text(HOST_CA)
    monkeypatch.setattr(hostca, "HOST_CA_BUNDLE", host)
    df = f"""\
ARG BASE
FROM $BASE
RUN head -n2 "$PIP_CERT" | tail -n1 && test "$SSL_CERT_FILE" = "$REQUESTS_CA_BUNDLE"
RUN mkdir -p /etc/ssl/certs && echo image-ca > /{BUNDLE}
RUN head -n1 /{BUNDLE}; head -n4 /{BUNDLE} | tail -n1; echo "$PIP_CERT"
RUN echo corp-ca >> /{BUNDLE}
RUN echo regenerated > /{BUNDLE}
"""
    built = run_build(make_context(tmp_path, df), tiny_base.ref, AMD64)
    out = built.output("linux/amd64")
    # no bundle in the image: the host's beside it; then the image's, the host's appended
    assert out == [HOST_LINE, "image-ca", HOST_LINE, f"/{BUNDLE}"]
    config = built.config("linux/amd64")
    # the RUN that only read the bundle added no layer: it was put back as it was
    assert [h.empty_layer for h in config.history[-5:]] == [True, False, True, False, False]
    layers = [built.layer("linux/amd64", i) for i in (-3, -2, -1)]
    assert [layer[BUNDLE][1] for layer in layers] == [
        b"image-ca\n",
        b"image-ca\ncorp-ca\n",
        b"regenerated\n",
    ]
    for i in range(1, len(built.manifest("linux/amd64").layers)):
        entries = built.layer("linux/amd64", i)
        assert not [n for n in entries if n.startswith("run")]  # the side mount's point
        assert all(HOST_LINE.encode() not in (data or b"") for _, data in entries.values())


def test_run_security_insecure_is_refused(tmp_path: Path, tiny_base: TinyBase) -> None:
    # dockerfile_runsecurity_test.go testRunSecurityInsecure: without the entitlement the
    # build fails; sandbox is the default and runs
    df = "ARG BASE\nFROM $BASE\nRUN --security=sandbox true\nRUN --security=insecure true\n"
    with pytest.raises(BuildError, match=r"Dockerfile:4: .*security\.insecure"):
        run_build(make_context(tmp_path, df), tiny_base.ref, AMD64)
