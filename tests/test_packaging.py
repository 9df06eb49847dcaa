"""The package as a user gets it: built, installed into a fresh virtual
environment with the commands docs/index.md gives, and used from there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT = 300  # seconds: packages come from the index

TINY_APP = """
import trio
from trio_boca import App

app = App()

@app.route("/")
async def index(req, res):
    res.text = "hello from a wheel"

async def main():
    async with trio.open_nursery() as nursery:
        address = await nursery.start(app.serve, "127.0.0.1", 0)
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(address.host, address.port)
            await stream.send_all(b"GET / HTTP/1.1\\r\\nhost: x\\r\\nconnection: close\\r\\n\\r\\n")
            reply = b""
            while chunk := await stream.receive_some():
                reply += chunk
        print(reply.split(b"\\r\\n\\r\\n", 1)[1].decode())
        try:
            from trio_boca.testing import LiveServer
            async with LiveServer(app):
                pass
        except ModuleNotFoundError as exc:
            print(exc)
        nursery.cancel_scope.cancel()

trio.run(main)
"""


def run(*command: str | Path, cwd: Path = ROOT) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built as docs/index.md says, and the sdist."""
    out = tmp_path_factory.mktemp("dist")
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools' leftovers would ship
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", out, ".", "--quiet")
    run(sys.executable, "-m", "build", "--sdist", "--outdir", out, ".")
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    return out


def test_the_wheel_and_sdist_ship_the_license_and_the_sdist_no_tests(dist: Path) -> None:
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    wheel_files = zipfile.ZipFile(wheel).namelist()
    with tarfile.open(sdist) as archive:
        sdist_files = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    assert "trio_boca-0.1.0.dist-info/licenses/LICENSE" in wheel_files
    assert "trio_boca/py.typed" in wheel_files
    assert "LICENSE" in sdist_files and "trio_boca/py.typed" in sdist_files
    assert not [name for name in sdist_files if name.startswith(("tests", "examples", "bench"))]


def test_the_wheel_in_a_fresh_venv_serves_and_runs_the_testing_example(
    dist: Path, tmp_path: Path
) -> None:
    [wheel] = dist.glob("*.whl")
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    pip = (python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check")

    # The framework alone: an embedded app serves; LiveServer names the extra it lacks.
    run(*pip, wheel)
    (tmp_path / "tiny.py").write_text(TINY_APP)
    assert run(python, "tiny.py", cwd=tmp_path).splitlines() == [
        "hello from a wheel",
        'LiveServer and connect_websocket need trio-websocket: pip install "trio_boca[testing]"',
    ]

    # With the testing extra, docs/testing.md's fixtures example runs as it is,
    # with the set-up that page gives.
    run(*pip, f"{wheel}[testing]")
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\ntrio_mode = true\n")
    example = ROOT / "examples" / "testing" / "test_echo.py"
    (project / "test_echo.py").write_text(example.read_text())
    output = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert "2 passed" in output
