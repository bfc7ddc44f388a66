"""What a built image says: its config, manifest and index, its history as BuildKit
writes it, and the times in them.

Reproducible by default. The build's epoch is SOURCE_DATE_EPOCH when given;
else the newest ``created`` among the base images of every target platform
(0 when none has one: scratch). It is the config's and the history's
``created``, the mtime of the directories the build creates, the clamp of
every mtime in the layers written, and SOURCE_DATE_EPOCH in the RUN
environment (so that Python writes hash-checked .pyc files, which stay valid
once mtimes are clamped). Same inputs then give the same index digest on two
runs and two machines. One exception, without SOURCE_DATE_EPOCH: a platform
where a RUN ran under emulation (QEMU) gets the wall-clock time as the
``created`` of its config and of the history from that step on (what such a
step writes is not reproducible anyway); its layers are still clamped. A COPY
leaves the mtimes of the directories it writes into as they were: so the
layer of ``COPY app/ /app`` is the same bytes on every platform, stored and
pushed once.
"""

from __future__ import annotations

from dataclasses import replace

from manyarch import dockerfile as df
from manyarch.imagebuild.options import BuildOptions
from manyarch.imagebuild.stages import StageState
from manyarch.layout import Layout
from manyarch.oci import mediatypes as mt
from manyarch.oci.manifest import BASE_DIGEST, BASE_NAME, CREATED, Descriptor, History, Manifest
from manyarch.oci.platform import Platform

#: BuildKit's history comment on every Dockerfile step.
HISTORY_COMMENT = "buildkit.dockerfile.v0"
#: buildx's annotation prefixes (KEY alone means manifest:KEY).
_ANNOTATION_KINDS = frozenset({"index", "manifest", "index-descriptor", "manifest-descriptor"})


def history(step: df.Step, created: str, *, layer: bool = True) -> History:
    """A history entry as BuildKit writes it (``RUN /bin/sh -c ... # buildkit``)."""
    text = step.text
    if isinstance(step, df.RunStep):
        args = " ".join(f"{k}={v}" for k, v in step.env if k not in df.PROXY_BUILD_ARGS)
        prefix = f"|{len(args.split())} {args} " if args else ""
        text = f"RUN {prefix}{' '.join(step.argv)}"
    if layer:
        text += " # buildkit"
    return History(created=created, created_by=text, comment=HISTORY_COMMENT)


def index_annotations(options: BuildOptions) -> dict[str, str]:
    """The index's annotations: buildx's ``index:KEY`` ones (``KEY`` alone goes to manifests)."""
    return {k[6:]: v for k, v in options.annotations.items() if k.startswith("index:")}


def write_image(
    store: Layout, state: StageState, options: BuildOptions, platform: Platform, created: str
) -> Descriptor:
    """A final stage's config and manifest (OCI media types), in the store."""
    cfg = state.config
    labels = {**cfg.config.labels, **options.labels}
    cfg = replace(
        cfg.with_config(replace(cfg.config, labels=labels)),
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        created=created,
        media_type=mt.OCI_CONFIG,
    )
    cdesc = store.put_document(cfg.to_document())
    annotations: dict[str, str] = {CREATED: created}
    if state.base_name:
        annotations[BASE_NAME] = state.base_name
        annotations[BASE_DIGEST] = state.base_digest
    for k, v in options.annotations.items():
        kind, sep, key = k.partition(":")
        if not sep or kind not in _ANNOTATION_KINDS:
            annotations[k] = v
        elif kind == "manifest":
            annotations[key] = v
    manifest = Manifest(
        config=Descriptor(cdesc.media_type, cdesc.digest, cdesc.size),
        layers=tuple(_oci_layer(d) for d in state.layers),
        media_type=mt.OCI_MANIFEST,
        annotations=annotations,
    )
    return store.put_document(manifest.to_document()).with_platform(platform)


def _oci_layer(d: Descriptor) -> Descriptor:
    """A layer descriptor with its OCI media type (a Docker base's layers are gzip tars)."""
    if d.media_type == mt.DOCKER_LAYER:
        return replace(d, media_type=mt.OCI_LAYER_GZIP)
    return d
