"""The corpus: Dockerfiles modelled on public Python projects' (tests/imagebuild/corpus/NN-name/,
each naming its model on its first line), built for linux/amd64 and linux/arm64 on the python
bases with native pip and apt, each image checked for what its pattern is there for.

The cases share one store, data home and caches (as builds on one machine do): the bases are
unpacked once and a wheel is downloaded once. No build cache is recorded, so every step runs.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import shutil
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from manyarch.errors import ManyarchError
from manyarch.imagebuild.cachemounts import cachemounts_dir
from manyarch.imagebuild.nativeapt.interceptor import NativeAptInterceptor
from manyarch.imagebuild.nativepip.interceptor import NativePipInterceptor
from manyarch.imagebuild.secrets import SecretSource
from tests.helpers.base_fixture import BASE_EPOCH, PythonBase
from tests.helpers.isolation import isolate
from tests.imagebuild.build_helpers import BOTH, Built, run_build

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "Dockerfile").is_file())
PLATFORMS = tuple(str(p) for p in BOTH)
MACHINE = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
#: ELF e_machine of each platform's binaries
ELF_MACHINE = {"linux/amd64": 62, "linux/arm64": 183}
SITE = "usr/local/lib/python3.11/dist-packages"

Entries = dict[str, tuple[tarfile.TarInfo, bytes | None]]


@dataclass
class Run:
    """One case's build and what the checks read of it."""

    built: Built
    context: Path
    base: str
    native_pip: NativePipInterceptor
    native_apt: NativeAptInterceptor
    _layers: dict[str, list[Entries]] = field(default_factory=dict)

    def layers(self, plat: str) -> list[Entries]:
        """The layers the build added over its base (the base's one layer is not read)."""
        if plat not in self._layers:
            n = len(self.built.manifest(plat).layers)
            self._layers[plat] = [self.built.layer(plat, i) for i in range(1, n)]
        return self._layers[plat]

    def layer_with(self, plat: str, name: str) -> Entries:
        """The last added layer holding ``name``."""
        found = [layer for layer in self.layers(plat) if name in layer]
        assert found, f"{name} in no layer of {plat}"
        return found[-1]

    def entry(self, plat: str, name: str) -> tuple[tarfile.TarInfo, bytes | None]:
        """``name`` as the last added layer holding it has it."""
        return self.layer_with(plat, name)[name]

    def names(self, plat: str) -> set[str]:
        """Every name in the added layers."""
        return {n for layer in self.layers(plat) for n in layer}

    def last(self, plat: str) -> str:
        """The last line the build's RUN steps printed for ``plat``."""
        return self.built.output(plat)[-1]

    def config(self, plat: str) -> dict[str, object]:
        """The image config's ``config`` object."""
        doc = json.loads(self.built.config(plat).to_document().data)
        cfg: dict[str, object] = doc["config"]
        return cfg


@dataclass(frozen=True)
class Case:
    """How a case is built (its base, extra options) and what its images must hold."""

    check: Callable[[Run], None]
    slim: bool = False


CHECKS: dict[str, Case] = {}


def case(name: str, *, slim: bool = False) -> Callable[[Callable[[Run], None]], None]:
    """Register the check of corpus/``name``."""

    def register(check: Callable[[Run], None]) -> None:
        CHECKS[name] = Case(check, slim)

    return register


def elf_machine(data: bytes | None) -> int:
    """An ELF file's e_machine."""
    assert data is not None and data[:4] == b"\x7fELF"
    return int.from_bytes(data[18:20], "little")


def no_tool_cache(run: Run, plat: str) -> None:
    """A cache mount's contents are never in a layer."""
    assert not [n for n in run.names(plat) if n.startswith("root/.cache")]


# -- the cases --------------------------------------------------------------------------


@case("01-uv-project")
def _uv_project(run: Run) -> None:
    venv = "app/.venv/lib/python3.11/site-packages"
    for plat in PLATFORMS:
        assert run.last(plat) == "uvdemo xn--bcher-kva.example"
        deps = run.layer_with(plat, f"{venv}/idna/core.py")
        assert "app/uv.lock" not in deps and "app/pyproject.toml" not in deps  # bind mounts'
        assert f"{venv}/idna/__pycache__/core.cpython-311.pyc" in deps  # UV_COMPILE_BYTECODE
        assert not [n for n in run.names(plat) if n.startswith(f"{venv}/six")]  # --no-dev
        # the project, synced last, editable: a .pth to its source in /app/src
        pth = [d for n in run.names(plat) if n.endswith(".pth") for d in [run.entry(plat, n)[1]]]
        assert [d for d in pth if d.strip() == b"/app/src"], pth
        no_tool_cache(run, plat)
    # uv filled its cache, kept for the next build
    assert any(p.is_file() for p in cachemounts_dir().glob("*/0/**/*"))


@case("02-uv-pip-cache")
def _uv_pip_cache(run: Run) -> None:
    for plat in PLATFORMS:
        assert run.last(plat) == "escaped &lt;b&gt;"
        so = f"{SITE}/markupsafe/_speedups.cpython-311-{MACHINE[plat]}-linux-gnu.so"
        assert elf_machine(run.entry(plat, so)[1]) == ELF_MACHINE[plat]
        assert f"{SITE}/itsdangerous/signer.py" in run.names(plat)
        no_tool_cache(run, plat)
    assert run.native_pip.native == 4, run.native_pip.fallbacks  # pip and uv, both platforms
    # natively, uv's cache (the mount's) is kept on the host
    assert any(p.is_file() for p in (run.native_pip.cache_dir / "uv").rglob("*"))


@case("03-poetry")
def _poetry(run: Run) -> None:
    for plat in PLATFORMS:
        assert run.last(plat) == "poetrydemo six 1.16.0"
        names = run.names(plat)
        assert f"{SITE}/six.py" in names  # no virtualenv: the system's site-packages
        assert not [n for n in names if "iniconfig" in n]  # --only main
        assert not [n for n in names if n.startswith(f"{SITE}/poetrydemo")]  # --no-root
        assert not [n for n in names if n.startswith("tmp/poetry_cache/")]
        # the lock was copied (the wildcard matched it)
        assert "code/poetry.lock" in run.layer_with(plat, "code/pyproject.toml")


@case("04-django-collectstatic", slim=True)
def _django(run: Run) -> None:
    logo = (run.context / "mysite/static/img/logo.svg").read_bytes()
    hashed_logo = f"img/logo.{hashlib.md5(logo).hexdigest()[:12]}.svg"
    for plat in PLATFORMS:
        assert run.config(plat)["User"] == "wagtail"
        passwd = run.entry(plat, "etc/passwd")[1] or b""
        uid = next(int(w.split(b":")[2]) for w in passwd.splitlines() if w.startswith(b"wagtail:"))
        manifest = run.entry(plat, "app/static/staticfiles.json")
        assert manifest[0].uid == uid  # collectstatic ran as the user
        paths = json.loads(manifest[1] or b"")["paths"]
        assert paths["img/logo.svg"] == hashed_logo
        css = run.entry(plat, f"app/static/{paths['css/site.css']}")
        assert hashed_logo.removeprefix("img/").encode() in (css[1] or b"")
        assert css[0].uid == uid
        assert run.entry(plat, "app/manage.py")[0].uid == uid  # COPY --chown
        assert f"{SITE}/django/__init__.py" in run.names(plat)
        assert "2 static files copied to '/app/static', 2 post-processed." in run.built.output(plat)


@case("05-pip-cache-mount")
def _pip_cache_mount(run: Run) -> None:
    for plat in PLATFORMS:
        assert run.last(plat) == "six 1.16.0"
        assert f"{SITE}/six.py" in run.names(plat)
        no_tool_cache(run, plat)
    assert run.native_pip.native == 2, run.native_pip.fallbacks  # the pip line, on the host
    # without native installs, pip runs in the sandbox over the cache mount
    # (what pip caches depends on the index's answers: this machine's proxy makes none)
    again = run_build(run.context, run.base, BOTH[:1], epoch=BASE_EPOCH)
    assert again.output("linux/amd64")[-1] == "six 1.16.0"
    assert [p.name for p in cachemounts_dir().iterdir()]  # made, kept for the next build
    assert any(n.endswith("/six.py") for n in again.layer("linux/amd64", 2))
    assert not [n for n in again.layer("linux/amd64", 2) if n.startswith("root/.cache")]


@case("06-private-index")
def _private_index(run: Run) -> None:
    for plat in PLATFORMS:
        assert run.last(plat) == "corp hello from the private index"
        assert f"{SITE}/corp_hello/__init__.py" in run.names(plat)
        # neither the token nor the index's URL is in a layer, the config or the history
        blob = b"".join(d for layer in run.layers(plat) for _, d in layer.values() if d)
        assert INDEX_TOKEN.encode() not in blob and b"127.0.0.1" not in blob
        history = run.built.config(plat).to_document().data.decode()
        assert INDEX_TOKEN not in history and "127.0.0.1" not in history


@case("07-flask-gunicorn-user", slim=True)
def _flask(run: Run) -> None:
    for plat in PLATFORMS:
        assert run.last(plat) == "flask 10001 Hello from Flask 23.0.0"
        script = run.entry(plat, "usr/local/bin/gunicorn")[1] or b""
        assert script.startswith(b"#!/usr/") and b"from gunicorn.app.wsgiapp import run" in script
        assert run.config(plat)["User"] == "appuser"
        passwd = (run.entry(plat, "etc/passwd")[1] or b"").decode()
        assert "appuser:x:10001:10001:,,,:/nonexistent:/sbin/nologin" in passwd.splitlines()
        assert run.entry(plat, "app/app.py")[0].uid == 0  # COPY ignores USER, as BuildKit's
        so = f"{SITE}/markupsafe/_speedups.cpython-311-{MACHINE[plat]}-linux-gnu.so"
        assert elf_machine(run.entry(plat, so)[1]) == ELF_MACHINE[plat]
        no_tool_cache(run, plat)
    assert run.native_pip.native == 2, run.native_pip.fallbacks


@case("08-fastapi")
def _fastapi(run: Run) -> None:
    for plat in PLATFORMS:
        # the route answers with the machine it runs on: QEMU's for arm64
        assert run.last(plat) == f"fastapi corpus {MACHINE[plat]}"
        so = f"{SITE}/pydantic_core/_pydantic_core.cpython-311-{MACHINE[plat]}-linux-gnu.so"
        assert elf_machine(run.entry(plat, so)[1]) == ELF_MACHINE[plat]
        assert "code/app/main.py" in run.names(plat)
    assert run.native_pip.native == 2, run.native_pip.fallbacks


@case("09-apt-slim", slim=True)
def _apt_slim(run: Run) -> None:
    for plat in PLATFORMS:
        out = run.built.output(plat)
        assert out[-1] == f"slim {MACHINE[plat]}"
        assert any(line.startswith("tini version") for line in out)
        apt = run.layer_with(plat, "usr/bin/tini")
        assert elf_machine(apt["usr/bin/tini"][1]) == ELF_MACHINE[plat]
        assert b"Package: tini\n" in (apt["var/lib/dpkg/status"][1] or b"")
        lists = [n for n in apt if n.startswith("var/lib/apt/lists/") and apt[n][0].isfile()]
        assert not [n for n in lists if not n.rpartition("/")[2].startswith(".wh.")]
    assert run.native_apt.native == 1, run.native_apt.fallbacks  # arm64's, on the host


@case("10-heredocs")
def _heredocs(run: Run) -> None:
    settings = b'[app]\nname = "heredoc-demo"\nworkers = 2\n'
    for plat in PLATFORMS:
        info, data = run.entry(plat, "app/settings.toml")
        assert data == settings and info.mode == 0o644
        assert "heredoc heredoc-demo 2" in run.built.output(plat)
        info_txt = f"heredoc-demo {MACHINE[plat]}\n".encode()
        assert run.entry(plat, "app/build-info.txt")[1] == info_txt
        assert run.entry(plat, "app/data/name")[1] == b"heredoc-demo\n"
        # the heredocs ran from files of their own, left in no layer
        assert {n.split("/")[0] for n in run.names(plat)} == {"app"}


@case("11-venv-copy-chown-chmod")
def _copy_from_chown_chmod(run: Run) -> None:
    for plat in PLATFORMS:
        assert run.last(plat).startswith("signed 999 v.")
        assert run.config(plat)["User"] == "nonroot"
        app = run.layer_with(plat, "app/.venv/pyvenv.cfg")
        owners = {(i.uid, i.gid) for n, (i, _) in app.items() if n == "app" or n.startswith("app/")}
        assert owners == {(999, 999)}
        assert "app/.venv/lib/python3.11/site-packages/itsdangerous/signer.py" in app
        # the builder's venv works in the final image: its python is the same path there
        python = app["app/.venv/bin/python3"][0]
        assert python.issym() and python.linkname.startswith("/usr/bin/python3")
        info = run.entry(plat, "usr/local/bin/app-entrypoint")[0]
        assert (info.mode, info.uid) == (0o755, 0)  # --chmod; the source is 0644


# -- the private index ------------------------------------------------------------------

INDEX_TOKEN = "corpus-token-3f9a"


def _wheel(name: str, version: str, files: dict[str, bytes]) -> bytes:
    """A pure wheel holding ``files``."""
    dist = f"{name}-{version}.dist-info"
    files = {
        **files,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: x\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    rows = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{path},sha256={digest},{len(data)}\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{dist}/RECORD", "".join(rows) + f"{dist}/RECORD,,\n")
    return buf.getvalue()


@dataclass
class PrivateIndex:
    """A PEP 503 index on the loopback that answers only with its token."""

    url: str
    authorized: int = 0
    refused: int = 0


@pytest.fixture
def private_index() -> Iterator[PrivateIndex]:
    """corp-hello 1.0 on a loopback index behind basic auth (user ``ci``, INDEX_TOKEN)."""
    wheel_name = "corp_hello-1.0-py3-none-any.whl"
    wheel = _wheel(
        "corp_hello",
        "1.0",
        {"corp_hello/__init__.py": b"def hello():\n    return 'hello from the private index'\n"},
    )
    pages = {
        "/simple/corp-hello/": f'<a href="/files/{wheel_name}">{wheel_name}</a>'.encode(),
        f"/files/{wheel_name}": wheel,
    }
    expected = "Basic " + base64.b64encode(f"ci:{INDEX_TOKEN}".encode()).decode()
    index = PrivateIndex("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != expected:
                index.refused += 1
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="corp"')
                self.end_headers()
                return
            body = pages.get(self.path)
            if body is None:
                self.send_error(404)
                return
            index.authorized += 1
            self.send_response(200)
            kind = "text/html" if self.path.endswith("/") else "application/octet-stream"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    index.url = f"http://ci:{INDEX_TOKEN}@127.0.0.1:{server.server_address[1]}/simple"
    yield index
    server.shutdown()
    thread.join()


# -- the test ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One store, data home, caches and work dir for every case (see the module's docstring)."""
    tmp = tmp_path_factory.mktemp("corpus")
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, tmp)
        yield tmp


def test_every_case_is_checked_and_documented() -> None:
    assert sorted(CHECKS) == CASES
    assert len(CASES) >= 10
    docs = (CORPUS.parents[2] / "docs" / "dockerfile.md").read_text()
    for name in CASES:
        first = (CORPUS / name / "Dockerfile").read_text().splitlines()[0]
        assert first.startswith("# Modeled on "), name
        assert f"| {name} |" in docs, name


@pytest.mark.parametrize("name", CASES)
def test_corpus_builds_for_both_platforms(
    name: str,
    corpus_home: Path,
    tmp_path: Path,
    python_base: PythonBase,
    slim_base: PythonBase,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = CHECKS[name]
    ctx = tmp_path / name
    shutil.copytree(CORPUS / name, ctx, ignore=shutil.ignore_patterns("__pycache__"))
    native_pip = NativePipInterceptor(corpus_home / "cache" / "pip")
    native_apt = NativeAptInterceptor(corpus_home / "cache" / "apt")
    kw: dict[str, object] = {}
    if name == "06-private-index":
        index: PrivateIndex = request.getfixturevalue("private_index")
        monkeypatch.setenv("MANYARCH_TEST_INDEX", index.url)
        kw["network"] = "host"  # the index is on the host's loopback
        # `required`: without the secret, the step fails before pip runs
        with pytest.raises(ManyarchError, match="pip-index"):
            run_build(ctx, python_base.ref, BOTH[:1], epoch=BASE_EPOCH, network="host")
        kw["secrets"] = {"pip-index": SecretSource.parse("id=pip-index,env=MANYARCH_TEST_INDEX")}
    base = slim_base if spec.slim else python_base
    built = run_build(
        ctx,
        base.ref,
        BOTH,
        build_args={"SLIM_BASE": slim_base.ref},
        interceptors=[native_apt, native_pip],
        epoch=BASE_EPOCH,
        **kw,
    )
    spec.check(Run(built, ctx, base.ref, native_pip, native_apt))
    if name == "06-private-index":
        assert index.authorized >= 4 and index.refused == 0  # index page and wheel, twice
    assert sorted(p.name for p in (corpus_home / "work").iterdir()) == []
