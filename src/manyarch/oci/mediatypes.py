"""Media types of the OCI image spec and of Docker's schema 2, and predicates on them."""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: Plain tar and zstd layers in Docker's family: BuildKit writes these (no Docker spec names them).
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

IN_TOTO = "application/vnd.in-toto+json"
#: The artifactType BuildKit gives attestation manifests (referrers API).
ATTESTATION_MANIFEST = "application/vnd.docker.attestation.manifest.v1+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES = frozenset(
    {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        OCI_LAYER_NONDIST,
        OCI_LAYER_NONDIST_GZIP,
        DOCKER_LAYER,
        DOCKER_LAYER_TAR,
        DOCKER_LAYER_ZSTD,
        DOCKER_FOREIGN_LAYER,
    }
)
#: What a client asks a registry for when it GETs a manifest.
MANIFEST_ACCEPT = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)


def is_index(media_type: str) -> bool:
    """An OCI image index or a Docker manifest list."""
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    """An OCI image manifest or a Docker schema 2 manifest."""
    return media_type in MANIFEST_TYPES


def is_config(media_type: str) -> bool:
    """An OCI or Docker image configuration."""
    return media_type in CONFIG_TYPES


def is_layer(media_type: str) -> bool:
    """A filesystem layer (tar, possibly compressed), OCI or Docker."""
    return media_type in LAYER_TYPES


def is_docker(media_type: str) -> bool:
    """One of Docker's schema 2 media types."""
    return media_type.startswith("application/vnd.docker.")


def compression(media_type: str) -> str | None:
    """``"gzip"``, ``"zstd"`` or ``None`` (plain tar) for a layer media type."""
    if media_type.endswith("+gzip") or media_type in (DOCKER_LAYER, DOCKER_FOREIGN_LAYER):
        return "gzip"
    if media_type.endswith(("+zstd", ".zstd")):
        return "zstd"
    return None


def layer_type(compression: str | None, docker: bool = False) -> str:
    """The layer media type for a compression, in the OCI or Docker family."""
    if docker:
        if compression != "gzip":
            raise ValueError("docker schema 2 layers are gzip-compressed")
        return DOCKER_LAYER
    return {None: OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}[compression]


def exported_layer_type(compression: str | None, docker: bool) -> str:
    """The layer media type BuildKit's image exporter writes (Docker's family has tar and zstd
    too: ``...diff.tar``, ``...diff.tar.zstd``, which no Docker spec names)."""
    if docker:
        return {None: DOCKER_LAYER_TAR, "gzip": DOCKER_LAYER, "zstd": DOCKER_LAYER_ZSTD}[
            compression
        ]
    return layer_type(compression)
