"""`make image-smoke`: build the image with buildah and run the README's flow against it.

Where no registry is reachable (this machine), the base is made from Debian's packages:
mmdebstrap (minbase, bookworm, with python3, python3-venv, libmagic1 and ca-certificates) writes
a root file system, which buildah turns into `localhost/charter-base:bookworm`; the Dockerfile's
BASE argument then names it. With `--base IMAGE` an existing image is used instead.

Then, in one working container of the built image (buildah's chroot isolation: this machine's
cgroups v1/v2 hybrid stops crun, and the container shares the host's network):
`charter migrate`, `charter serve --host 0.0.0.0 --port PORT` and `charter worker`, on SQLite
under the image's VAR_DIR (or `--database-url`, e.g. an empty PostgreSQL database); the image's
HEALTHCHECK command; and over HTTP from here: liveness, readiness, register, log in, me, create
a task, list, complete, log out, and the 401 after it.

Needs root, buildah (Debian package) and, without `--base`, mmdebstrap (Debian package) and the
Debian mirror; pip in the build needs PyPI. Exit status 0 when every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BASE_TAG = "localhost/charter-base:bookworm"
BASE_PACKAGES = "python3,python3-venv,libmagic1,ca-certificates"
MIRROR = "http://deb.debian.org/debian"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
BUILDAH = shutil.which("buildah") or "buildah"


def run(*command: str, timeout: float = 900, capture: bool = False) -> str:
    """Run `command`, failing loudly (its output shown) when it fails; its stdout if `capture`."""
    print("+", " ".join(command), flush=True)
    result = subprocess.run(command, check=False, timeout=timeout, capture_output=capture, text=True)
    if result.returncode != 0:
        if capture:
            print(result.stdout, result.stderr, sep="\n", file=sys.stderr)
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}")
    return result.stdout.strip() if capture else ""


def image_exists(tag: str) -> bool:
    inspect = [BUILDAH, "inspect", "--type", "image", tag]
    return subprocess.run(inspect, capture_output=True, check=False).returncode == 0


def build_base() -> str:
    """`localhost/charter-base:bookworm` from Debian's packages (kept: built once)."""
    if image_exists(BASE_TAG):
        return BASE_TAG
    if shutil.which("mmdebstrap") is None:
        raise SystemExit("no base image and no mmdebstrap: apt-get install -y mmdebstrap, or pass --base IMAGE")
    with tempfile.TemporaryDirectory(prefix="charter-base-") as folder:
        tarball = str(Path(folder) / "base.tar")
        run("mmdebstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", tarball, MIRROR)
        container = run("buildah", "from", "scratch", capture=True)
        try:
            run("buildah", "add", container, tarball, "/", capture=True)
            run("buildah", "commit", container, BASE_TAG, capture=True)
        finally:
            run("buildah", "rm", container, capture=True)
    return BASE_TAG


def build_image(base: str, tag: str) -> None:
    """The Dockerfile with BASE=`base`, in docker format (OCI images drop HEALTHCHECK). The host's
    CA bundle is mounted over the build's, for pip behind a TLS-inspecting proxy."""
    mount = [] if not HOST_CA.exists() else ["-v", f"{HOST_CA}:{HOST_CA}:ro"]
    run(
        "buildah", "bud", "--isolation", "chroot", "--layers", "--format", "docker",
        "--build-arg", f"BASE={base}", *mount, "-t", tag, str(ROOT),
        timeout=1800,
    )  # fmt: skip


def start(container: str, env: dict[str, str], *command: str, log: Path) -> subprocess.Popen[bytes]:
    """`command` in the container, in the background, in a process group of its own."""
    settings = [item for name, value in env.items() for item in ("-e", f"{name}={value}")]
    with log.open("wb") as stream:
        return subprocess.Popen(
            [BUILDAH, "run", "--isolation", "chroot", *settings, container, "--", *command],
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop what `start` started: SIGINT to its process group, SIGKILL after 15 seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def flow(base_url: str) -> None:
    """The README's whole flow, each answer checked."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.get("/api/v1/health/live").status_code == 200
        ready = client.get("/api/v1/health/ready")
        assert ready.status_code == 200, ready.text
        account = {"email": "ada@example.com", "password": "correct horse battery staple", "display_name": "Ada"}
        assert client.post("/api/v1/auth/register", json=account).status_code == 201
        login = client.post("/api/v1/auth/login", json={"email": account["email"], "password": account["password"]})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        me = client.get("/api/v1/auth/me", headers=auth)
        assert me.status_code == 200, me.text
        tasks = f"/api/v1/users/{me.json()['id']}/tasks"
        task = client.post(tasks, json={"title": "Write the report", "priority": "high"}, headers=auth)
        assert task.status_code == 201, task.text
        listed = client.get(tasks, params={"limit": 10}, headers=auth)
        assert [item["id"] for item in listed.json()["items"]] == [task.json()["id"]], listed.text
        done = client.patch(f"{tasks}/{task.json()['id']}/complete", headers=auth)
        assert done.status_code == 200, done.text
        assert client.post("/api/v1/auth/logout", headers=auth).status_code == 204
        after = client.get("/api/v1/auth/me", headers=auth)
        assert after.status_code == 401 and after.headers["content-type"].startswith("application/problem+json")
    print("flow: register, login, me, create, list, complete, logout, 401: ok", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="base image (default: one made from Debian's packages)")
    parser.add_argument("--tag", default="localhost/charter:latest")
    parser.add_argument("--port", type=int, default=18741)
    parser.add_argument("--logs", type=Path, default=ROOT / "test-artifacts" / "image-smoke")
    parser.add_argument(
        "--database-url",
        default="sqlite:////var/lib/charter/charter.db",
        help="DATABASE_URL inside the container (default: SQLite under its VAR_DIR); an empty PostgreSQL "
        "database on 127.0.0.1 works too (the container shares the host's network)",
    )
    parser.add_argument("--skip-build", action="store_true", help="use the image already tagged --tag")
    args = parser.parse_args(argv)
    if shutil.which("buildah") is None:
        raise SystemExit("buildah is not installed: apt-get install -y buildah")
    if not args.skip_build:
        build_image(args.base or build_base(), args.tag)
    args.logs.mkdir(parents=True, exist_ok=True)
    container = run("buildah", "from", args.tag, capture=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        config = json.loads(run("buildah", "inspect", "--type", "image", args.tag, capture=True))
        health = config["Docker"]["config"]["Healthcheck"]["Test"]
        env = {"DATABASE_URL": args.database_url, "RATE_LIMIT_ENABLED": "false"}
        settings = [item for name, value in env.items() for item in ("-e", f"{name}={value}")]
        run("buildah", "run", "--isolation", "chroot", *settings, container, "--", "charter", "migrate", capture=True)
        serve = ["charter", "serve", "--host", "0.0.0.0", "--port", str(args.port)]  # noqa: S104 - as in a container
        processes.append(start(container, env, *serve, log=args.logs / "serve.log"))
        processes.append(start(container, env, "charter", "worker", log=args.logs / "worker.log"))
        base_url = f"http://127.0.0.1:{args.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base_url}/api/v1/health/live", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise SystemExit(f"the server did not answer within 60 s: see {args.logs / 'serve.log'}")
        # The image's HEALTHCHECK ran as the runtime would (its port is the image's 8000: here PORT).
        probe = [part.replace(":8000/", f":{args.port}/") for part in health[1:]]
        run("buildah", "run", "--isolation", "chroot", container, "--", *probe, capture=True)
        print("HEALTHCHECK command: ok", flush=True)
        flow(base_url)
        deadline = time.monotonic() + 30
        while "job_worker_started" not in (args.logs / "worker.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "job_worker_started" in (args.logs / "worker.log").read_text(), "the worker did not start"
        print("worker: started", flush=True)
    finally:
        for process in processes:
            stop(process)
        run("buildah", "rm", container, capture=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
