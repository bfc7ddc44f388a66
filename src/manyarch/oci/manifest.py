"""Descriptors, image manifests, indexes and image configs (OCI image spec v1.1).

Values only: parse from a :class:`Document` (keeping nothing but the fields),
serialise to a new :class:`Document`. Transforms return new values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from manyarch.errors import InvalidDocument, InvalidInput
from manyarch.oci import mediatypes as mt
from manyarch.oci.digest import Digest
from manyarch.oci.document import Document, canonical_json, load_json_object
from manyarch.oci.platform import Platform

#: Annotation buildx puts on attestation manifests in an index.
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
ATTESTATION_MANIFEST = "attestation-manifest"
#: Annotation naming an image in an OCI layout's index.json.
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "org.opencontainers.image.created"
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


def _str_map(obj: Any, what: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InvalidDocument(f"{what} is not a JSON object")
    return {str(k): str(v) for k, v in obj.items()}


@dataclass(frozen=True)
class Descriptor:
    """Points at content by media type, digest and size."""

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None

    @classmethod
    def of(cls, doc: Document, **kw: Any) -> Descriptor:
        """The descriptor of a document's bytes."""
        return cls(doc.media_type, doc.digest, doc.size, **kw)

    @classmethod
    def from_json(cls, obj: Any) -> Descriptor:
        """From a JSON descriptor object."""
        if not isinstance(obj, dict):
            raise InvalidDocument("descriptor is not a JSON object")
        try:
            media_type = obj["mediaType"]
            digest = Digest.parse(obj["digest"])
            size = obj["size"]
        except KeyError as e:
            raise InvalidDocument(f"descriptor lacks {e.args[0]!r}") from e
        except InvalidInput as e:
            raise InvalidDocument(f"descriptor has a bad digest: {e}") from e
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidDocument(f"descriptor {digest} has an invalid size {size!r}")
        plat = obj.get("platform")
        return cls(
            media_type=str(media_type),
            digest=digest,
            size=size,
            platform=Platform.from_json(plat) if isinstance(plat, dict) else None,
            annotations=_str_map(obj.get("annotations"), "annotations"),
            urls=tuple(str(u) for u in obj.get("urls") or ()),
            artifact_type=obj.get("artifactType"),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON descriptor object, keys in the spec's order."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        # the order of the Go structs (image-spec specs-go), which registries echo
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @property
    def is_attestation(self) -> bool:
        """An attestation manifest as buildx adds to an index (never run)."""
        if self.annotations.get(REFERENCE_TYPE) == ATTESTATION_MANIFEST:
            return True
        return self.platform is not None and self.platform.is_unknown

    def with_annotations(self, **extra: str) -> Descriptor:
        """A copy with more annotations."""
        return replace(self, annotations={**self.annotations, **extra})

    def with_platform(self, platform: Platform | None) -> Descriptor:
        """A copy with another platform."""
        return replace(self, platform=platform)


@dataclass(frozen=True)
class Manifest:
    """An image manifest: a config and layers (OCI or Docker schema 2)."""

    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    media_type: str = mt.OCI_MANIFEST
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @classmethod
    def parse(cls, doc: Document | bytes) -> Manifest:
        """Parse a manifest document."""
        data = doc.data if isinstance(doc, Document) else doc
        obj = load_json_object(data, "manifest")
        if obj.get("schemaVersion") != 2:
            raise InvalidDocument(
                f"unsupported manifest schemaVersion {obj.get('schemaVersion')!r}",
                "only schema 2 (OCI or Docker) manifests are supported",
            )
        media_type = obj.get("mediaType") or (
            doc.media_type if isinstance(doc, Document) else mt.OCI_MANIFEST
        )
        if not mt.is_manifest(media_type):
            raise InvalidDocument(f"expected an image manifest, got {media_type}")
        if "config" not in obj:
            raise InvalidDocument("manifest lacks 'config'")
        layers = obj.get("layers") or []
        if not isinstance(layers, list):
            raise InvalidDocument("manifest 'layers' is not a list")
        subject = obj.get("subject")
        return cls(
            config=Descriptor.from_json(obj["config"]),
            layers=tuple(Descriptor.from_json(x) for x in layers),
            media_type=media_type,
            annotations=_str_map(obj.get("annotations"), "annotations"),
            subject=Descriptor.from_json(subject) if subject else None,
            artifact_type=obj.get("artifactType"),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys in the spec's order."""
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["config"] = self.config.to_json()
        out["layers"] = [x.to_json() for x in self.layers]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_document(self) -> Document:
        """Serialise to new bytes."""
        return Document(canonical_json(self.to_json()), self.media_type)

    def with_layer(self, layer: Descriptor) -> Manifest:
        """A new manifest with one more layer on top."""
        return replace(self, layers=(*self.layers, layer))

    def as_docker(self) -> Manifest:
        """The same image as a Docker schema 2 manifest.

        Docker types for the config and the gzip layers (others keep theirs),
        no annotations (Docker's format has none): what a build writes when
        asked for Docker media types. The blobs are the same bytes.
        """
        return replace(
            self,
            config=replace(self.config, media_type=mt.DOCKER_CONFIG),
            layers=tuple(
                replace(d, media_type=mt.DOCKER_LAYER, annotations={})
                if mt.compression(d.media_type) == "gzip"
                else d
                for d in self.layers
            ),
            media_type=mt.DOCKER_MANIFEST,
            annotations={},
        )


@dataclass(frozen=True)
class Index:
    """An image index (OCI) or manifest list (Docker): one manifest per platform."""

    manifests: tuple[Descriptor, ...] = ()
    media_type: str = mt.OCI_INDEX
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @classmethod
    def parse(cls, doc: Document | bytes) -> Index:
        """Parse an index document."""
        data = doc.data if isinstance(doc, Document) else doc
        obj = load_json_object(data, "index")
        if obj.get("schemaVersion") != 2:
            raise InvalidDocument(f"unsupported index schemaVersion {obj.get('schemaVersion')!r}")
        media_type = obj.get("mediaType") or (
            doc.media_type if isinstance(doc, Document) else mt.OCI_INDEX
        )
        if not mt.is_index(media_type):
            raise InvalidDocument(f"expected an image index, got {media_type}")
        manifests = obj.get("manifests") or []
        if not isinstance(manifests, list):
            raise InvalidDocument("index 'manifests' is not a list")
        subject = obj.get("subject")
        return cls(
            manifests=tuple(Descriptor.from_json(x) for x in manifests),
            media_type=media_type,
            annotations=_str_map(obj.get("annotations"), "annotations"),
            subject=Descriptor.from_json(subject) if subject else None,
            artifact_type=obj.get("artifactType"),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys in the spec's order."""
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["manifests"] = [x.to_json() for x in self.manifests]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_document(self) -> Document:
        """Serialise to new bytes."""
        return Document(canonical_json(self.to_json()), self.media_type)

    def with_manifest(self, desc: Descriptor) -> Index:
        """A new index with one more entry."""
        return replace(self, manifests=(*self.manifests, desc))

    def as_docker(self, manifests: tuple[Descriptor, ...]) -> Index:
        """A Docker manifest list over ``manifests`` (the entries in their Docker form)."""
        return replace(
            self, manifests=manifests, media_type=mt.DOCKER_MANIFEST_LIST, annotations={}
        )

    def images(self) -> list[Descriptor]:
        """The runnable entries: attestations left out."""
        return [d for d in self.manifests if not d.is_attestation]

    def platforms(self) -> list[Platform]:
        """Platforms of the runnable entries, in index order."""
        return [d.platform for d in self.images() if d.platform is not None]

    def select(self, wanted: Platform) -> Descriptor | None:
        """The entry ``wanted`` runs best (containerd's order), attestations skipped."""
        from manyarch.oci.platform import best_match

        return best_match(wanted, self.images(), lambda d: d.platform)


def parse_manifest_or_index(doc: Document) -> Manifest | Index:
    """Parse a document that is either a manifest or an index (by media type or content)."""
    media_type = doc.media_type
    if not (mt.is_index(media_type) or mt.is_manifest(media_type)):
        obj = load_json_object(doc.data, "manifest")
        media_type = obj.get("mediaType") or ("" if "manifests" not in obj else mt.OCI_INDEX)
        if not media_type and "config" in obj:
            media_type = mt.OCI_MANIFEST
    if media_type != doc.media_type:
        doc = Document(doc.data, media_type)
    if mt.is_index(media_type):
        return Index.parse(doc)
    if mt.is_manifest(media_type):
        return Manifest.parse(doc)
    raise InvalidDocument(f"not a manifest or an index: media type {doc.media_type!r}")


# -- image config ------------------------------------------------------------

# JSON name -> Python name for the container ``config`` object.
_CONFIG_FIELDS: dict[str, str] = {
    "User": "user",
    "ExposedPorts": "exposed_ports",
    "Env": "env",
    "Entrypoint": "entrypoint",
    "Cmd": "cmd",
    "Volumes": "volumes",
    "WorkingDir": "working_dir",
    "Labels": "labels",
    "StopSignal": "stop_signal",
    "Healthcheck": "healthcheck",
    "Shell": "shell",
    "ArgsEscaped": "args_escaped",
    "OnBuild": "on_build",
}


@dataclass(frozen=True)
class ContainerConfig:
    """The execution parameters of an image (the config's ``config`` object)."""

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    healthcheck: Mapping[str, Any] | None = None
    shell: tuple[str, ...] | None = None
    args_escaped: bool | None = None
    on_build: tuple[str, ...] | None = None

    @classmethod
    def from_json(cls, obj: Any) -> ContainerConfig:
        """From the config's ``config`` object (null allowed)."""
        if not obj:
            return cls()
        if not isinstance(obj, dict):
            raise InvalidDocument("image config 'config' is not a JSON object")

        def seq(v: Any) -> tuple[str, ...] | None:
            if v is None:
                return None
            if isinstance(v, str):
                return (v,)
            return tuple(str(x) for x in v)

        return cls(
            user=str(obj.get("User") or ""),
            exposed_ports=tuple(sorted((obj.get("ExposedPorts") or {}).keys())),
            env=tuple(str(x) for x in obj.get("Env") or ()),
            entrypoint=seq(obj.get("Entrypoint")),
            cmd=seq(obj.get("Cmd")),
            volumes=tuple(sorted((obj.get("Volumes") or {}).keys())),
            working_dir=str(obj.get("WorkingDir") or ""),
            labels=_str_map(obj.get("Labels"), "Labels"),
            stop_signal=str(obj.get("StopSignal") or ""),
            healthcheck=obj.get("Healthcheck"),
            shell=seq(obj.get("Shell")),
            args_escaped=obj.get("ArgsEscaped"),
            on_build=seq(obj.get("OnBuild")),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``config`` object, empty fields left out."""
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.healthcheck is not None:
            out["Healthcheck"] = dict(self.healthcheck)
        if self.shell is not None:
            out["Shell"] = list(self.shell)
        if self.args_escaped is not None:
            out["ArgsEscaped"] = self.args_escaped
        if self.on_build is not None:
            out["OnBuild"] = list(self.on_build)
        return out

    def env_dict(self) -> dict[str, str]:
        """``Env`` as a mapping (later entries win)."""
        out: dict[str, str] = {}
        for item in self.env:
            k, _, v = item.partition("=")
            out[k] = v
        return out

    def with_env(self, **values: str) -> ContainerConfig:
        """A copy with variables set (existing ones replaced in place)."""
        env = self.env_dict()
        env.update(values)
        return replace(self, env=tuple(f"{k}={v}" for k, v in env.items()))


@dataclass(frozen=True)
class History:
    """One entry of the config's ``history``."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False

    @classmethod
    def from_json(cls, obj: Any) -> History:
        """From a history object."""
        if not isinstance(obj, dict):
            raise InvalidDocument("history entry is not a JSON object")
        return cls(
            created=obj.get("created"),
            created_by=obj.get("created_by"),
            author=obj.get("author"),
            comment=obj.get("comment"),
            empty_layer=bool(obj.get("empty_layer", False)),
        )

    def to_json(self) -> dict[str, Any]:
        """The history object, empty fields left out."""
        out: dict[str, Any] = {}
        for key in ("created", "created_by", "author", "comment"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.empty_layer:
            out["empty_layer"] = True
        return out


@dataclass(frozen=True)
class ImageConfig:
    """An image configuration: platform, execution parameters, rootfs and history."""

    architecture: str
    os: str
    variant: str = ""
    os_version: str = ""
    created: str | None = None
    author: str | None = None
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()
    media_type: str = mt.OCI_CONFIG

    @classmethod
    def parse(cls, doc: Document | bytes) -> ImageConfig:
        """Parse an image config document."""
        data = doc.data if isinstance(doc, Document) else doc
        obj = load_json_object(data, "image config")
        rootfs = obj.get("rootfs") or {}
        try:
            diff_ids = tuple(Digest.parse(d) for d in rootfs.get("diff_ids") or ())
        except InvalidInput as e:
            raise InvalidDocument(f"image config has a bad diff_id: {e}") from e
        return cls(
            architecture=str(obj.get("architecture") or ""),
            os=str(obj.get("os") or ""),
            variant=str(obj.get("variant") or ""),
            os_version=str(obj.get("os.version") or ""),
            created=obj.get("created"),
            author=obj.get("author"),
            config=ContainerConfig.from_json(obj.get("config")),
            diff_ids=diff_ids,
            history=tuple(History.from_json(h) for h in obj.get("history") or ()),
            media_type=doc.media_type if isinstance(doc, Document) else mt.OCI_CONFIG,
        )

    @property
    def platform(self) -> Platform:
        """The platform this config declares."""
        return Platform.of(self.os, self.architecture, self.variant)

    def to_json(self) -> dict[str, Any]:
        """The JSON object."""
        out: dict[str, Any] = {}
        if self.created is not None:
            out["created"] = self.created
        if self.author is not None:
            out["author"] = self.author
        out["architecture"] = self.architecture
        if self.variant:
            out["variant"] = self.variant
        out["os"] = self.os
        if self.os_version:
            out["os.version"] = self.os_version
        out["config"] = self.config.to_json()
        out["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in self.diff_ids]}
        if self.history:
            out["history"] = [h.to_json() for h in self.history]
        return out

    def to_document(self) -> Document:
        """Serialise to new bytes."""
        return Document(canonical_json(self.to_json()), self.media_type)

    def with_layer(self, diff_id: Digest, history: History) -> ImageConfig:
        """A new config with one more layer and its history entry."""
        return replace(self, diff_ids=(*self.diff_ids, diff_id), history=(*self.history, history))

    def with_history(self, history: History) -> ImageConfig:
        """A new config with one more history entry and no layer (``empty_layer``)."""
        return replace(self, history=(*self.history, replace(history, empty_layer=True)))

    def with_config(self, config: ContainerConfig) -> ImageConfig:
        """A new config with other execution parameters."""
        return replace(self, config=config)
