"""Registry transfer throughput: manyarch against ``skopeo copy``, same image, same run.

Usage: python bench/transfer.py [--layers 8] [--layer-mb 25] [--rounds 1] [--jobs 4]

Makes an OCI layout holding one image of incompressible layers (gzip streams
of random bytes, stored blocks so making them is quick), then for each tool
starts a fresh loopback registry (Debian's docker-registry) and times:

* push: OCI layout -> registry (skopeo: ``skopeo copy oci:... docker://...``;
  manyarch: ``push_blob`` in parallel, then ``put_manifest``);
* pull: registry -> files (skopeo: ``skopeo copy docker://... oci:...``;
  manyarch: ``get_manifest`` then ``download_blob`` in parallel, verified).

Prints both times and ratios (>1.0 means manyarch is faster). With
``--rounds N`` the best round of each tool counts.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.helpers
sys.path.insert(0, str(ROOT / "src"))

from manyarch.images import LayoutSink, LayoutSource, RegistrySink, RegistrySource, copy  # noqa: E402
from manyarch.layout import Layout  # noqa: E402
from manyarch.oci import Descriptor, Digest, Document, Manifest, Reference  # noqa: E402
from manyarch.oci import mediatypes as mt  # noqa: E402
from manyarch.registry import RegistryClient, RegistryOptions  # noqa: E402
from tests.helpers.registry_server import start_registry  # noqa: E402


def make_layout(path: Path, layers: int, layer_mb: int) -> tuple[Document, list[Descriptor]]:
    """An OCI layout with one image tagged ``bench``; returns its manifest and blobs."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def store(data: bytes, media_type: str) -> Descriptor:
        digest = Digest.of(data)
        (blobs / digest.hex).write_bytes(data)
        return Descriptor(media_type, digest, len(data))

    layer_descs, diff_ids = [], []
    for i in range(layers):
        payload = os.urandom(layer_mb * 2**20)
        tar_buf = io.BytesIO()
        with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"data/layer{i}.bin")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        tar_bytes = tar_buf.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(tar_bytes).hexdigest())
        layer_descs.append(
            store(gzip.compress(tar_bytes, compresslevel=0, mtime=0), mt.OCI_LAYER_GZIP)
        )
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    config_desc = store(config, mt.OCI_CONFIG)
    manifest = Manifest(config_desc, tuple(layer_descs)).to_document()
    manifest_desc = store(manifest.data, manifest.media_type)
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                **manifest_desc.to_json(),
                "annotations": {"org.opencontainers.image.ref.name": "bench"},
            }
        ],
    }
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return manifest, [config_desc, *layer_descs]


CPU: dict[str, float] = {}


def timed(fn, cpu_key: str = "") -> float:  # type: ignore[no-untyped-def]
    """Wall seconds of ``fn()``; its client CPU seconds (ours or skopeo's) go to ``CPU``."""
    own, children = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = time.process_time() - own
    used += (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    if cpu_key:
        CPU[cpu_key] = min(CPU.get(cpu_key, used), used)
    return wall


def skopeo_round(layout: Path, host: str, work: Path) -> tuple[float, float]:
    """(push, pull) seconds for skopeo."""
    dest = f"docker://{host}/bench/skopeo:v1"
    push = timed(
        lambda: subprocess.run(
            ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:bench", dest],
            check=True,
        ),
        "skopeo push",
    )
    out = work / "skopeo-pulled"
    pull = timed(
        lambda: subprocess.run(
            ["skopeo", "copy", "-q", "--src-tls-verify=false", dest, f"oci:{out}:v1"],
            check=True,
        ),
        "skopeo pull",
    )
    return push, pull


def manyarch_round(
    layout: Path, manifest: Document, blobs: list[Descriptor], host: str, work: Path, jobs: int
) -> tuple[float, float]:
    """(push, pull) seconds for manyarch (client set-up included, as skopeo's is)."""
    ref = Reference.parse(f"{host}/bench/manyarch:v1")

    # the paths `manyarch copy` takes: layout -> registry, registry -> layout
    def push() -> None:
        with RegistryClient(RegistryOptions(jobs=jobs)) as client:
            source = LayoutSource(Layout.open(layout), "bench")
            copy(source, RegistrySink(client, ref), tag="v1", jobs=jobs)

    out = work / "manyarch-pulled"

    def pull() -> None:
        with RegistryClient(RegistryOptions(jobs=jobs)) as client:
            sink = LayoutSink(Layout.open(out, create=True))
            copy(RegistrySource(client, ref), sink, tag="v1", jobs=jobs)

    return timed(push, "manyarch push"), timed(pull, "manyarch pull")


def main() -> int:
    """Run the benchmark and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--layer-mb", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=4)
    args = parser.parse_args()
    if shutil.which("skopeo") is None:
        print("skopeo is not installed (apt-get install skopeo)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="manyarch-bench-") as tmp:
        work = Path(tmp)
        layout = work / "layout"
        manifest, blobs = make_layout(layout, args.layers, args.layer_mb)
        total = sum(d.size for d in blobs)
        print(f"image: {len(blobs) - 1} layers, {total / 2**20:.0f} MiB, jobs={args.jobs}")
        best: dict[str, list[float]] = {}
        for r in range(args.rounds):
            for tool in ("skopeo", "manyarch"):
                round_dir = work / f"{tool}-{r}"
                round_dir.mkdir()
                server = start_registry(round_dir)
                try:
                    if tool == "skopeo":
                        times = skopeo_round(layout, server.host, round_dir)
                    else:
                        times = manyarch_round(
                            layout, manifest, blobs, server.host, round_dir, args.jobs
                        )
                finally:
                    server.stop()
                    shutil.rmtree(round_dir / "data", ignore_errors=True)
                print(f"round {r + 1} {tool:8s} push {times[0]:6.2f} s  pull {times[1]:6.2f} s")
                previous = best.get(tool)
                best[tool] = (
                    [min(a, b) for a, b in zip(previous, times, strict=True)]
                    if previous
                    else list(times)
                )
        mib = total / 2**20
        print()
        print(
            f"{'best of ' + str(args.rounds):10s}{'push':>22s}{'pull':>22s}   client CPU push/pull"
        )
        for tool in ("skopeo", "manyarch"):
            push, pull = best[tool]
            cpu = f"{CPU[tool + ' push']:.2f} s / {CPU[tool + ' pull']:.2f} s"
            print(
                f"{tool:10s}{push:8.2f} s {mib / push:5.0f} MiB/s"
                f"{pull:8.2f} s {mib / pull:5.0f} MiB/s   {cpu}"
            )
        push_ratio = best["skopeo"][0] / best["manyarch"][0]
        pull_ratio = best["skopeo"][1] / best["manyarch"][1]
        print(
            "ratio skopeo/manyarch (>1: manyarch faster): "
            f"push {push_ratio:.2f}  pull {pull_ratio:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
