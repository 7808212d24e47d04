"""What gzip costs and saves (issue 18, "Compression"): one page of 100 tasks (`GET
/users/{id}/tasks?limit=100`, realistic titles, descriptions and tags) served by the full app
(edge included) on one uvicorn worker, with `Accept-Encoding: gzip` and with `identity`,
measured with wrk in the same run (alternating rounds); plus the page's size each way and what
compressing it costs in this process at zlib levels 1, 6 (ours) and 9 (starlette's default).

Usage: ``python -m bench.compression [--seconds 5] [--connections 16] [--rounds 2]`` (``make
bench``; SQLite unless DATABASE_URL names PostgreSQL). Writes bench/results/compression-<database>-<date>.json and
the table in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import httpx

from bench.harness import save_results, server_environment, serving, wrk
from server.edge.compression import COMPRESS_LEVEL

BIN = Path(sys.executable).parent
PAGE = 100
SENTENCE = (
    "review the quarterly figures with finance and send the summary to the board before friday; "
    "check the supplier contract renewal terms, the delivery windows and the penalty clauses"
)
WORDS = SENTENCE.split(" ")


def _text(seed: int, words: int) -> str:
    return " ".join(WORDS[(seed * 7 + index * 3) % len(WORDS)] for index in range(words))


def seed_page(base_url: str) -> tuple[dict[str, str], str]:
    """An account with `PAGE` tasks; its bearer header and the list path."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        account = {"email": "bench-gzip@example.com", "password": "correct horse battery staple"}
        registered = client.post("/api/v1/auth/register", json={**account, "display_name": "Bench"})
        assert registered.status_code == 201, registered.text
        login = client.post("/api/v1/auth/login", json=account)
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        user_id = client.get("/api/v1/auth/me", headers=headers).json()["id"]
        path = f"/api/v1/users/{user_id}/tasks"
        for number in range(PAGE):
            task = {
                "title": _text(number, 8).capitalize(),
                "description": _text(number + 1, 30),
                "priority": ("low", "medium", "high")[number % 3],
                "due_at": f"2027-01-{1 + number % 28:02d}T09:00:00Z",
                "tags": [f"project-{number % 5}", f"team-{number % 3}"],
            }
            created = client.post(path, json=task, headers=headers)
            assert created.status_code == 201, created.text
    return headers, f"{path}?limit={PAGE}"


def sizes(base_url: str, headers: dict[str, str], path: str) -> dict[str, int]:
    """The page's bytes on the wire with gzip and without."""
    out = {}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for name, encoding in (("identity", "identity"), ("gzip", "gzip")):
            with client.stream("GET", path, headers={**headers, "Accept-Encoding": encoding}) as response:
                body = b"".join(response.iter_raw())
                assert response.headers.get("content-encoding") == (None if name == "identity" else "gzip")
            out[name] = len(body)
            if name == "identity":
                out["_plain_body"] = body  # type: ignore[assignment]
    return out


def compress_cost(body: bytes, level: int, *, repeat: int = 200) -> dict[str, float]:
    """Median µs to gzip `body` at `level` (as the middleware does: one compressor, one flush)
    and the compressed size."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        packed = compressor.compress(body) + compressor.flush()
        timings.append(time.perf_counter() - started)
    assert gzip.decompress(packed) == body
    return {"us": statistics.median(timings) * 1e6, "bytes": len(packed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    database = os.environ.get("DATABASE_URL", "")
    with tempfile.TemporaryDirectory(prefix="charter-bench-gzip-") as tmp:
        url = database if database.startswith("postgresql") else f"sqlite:///{tmp}/bench.db"
        env = {**server_environment(url), "VAR_DIR": tmp}
        subprocess.run([str(BIN / "charter"), "migrate"], env=env, check=True)
        with serving("with_edge", env) as (port, _):
            base_url = f"http://127.0.0.1:{port}"
            headers, path = seed_page(base_url)
            measured = sizes(base_url, headers, path)
            plain_body: bytes = measured.pop("_plain_body")  # type: ignore[assignment]
            auth = [f"Authorization: {headers['Authorization']}"]
            runs: dict[str, list[dict[str, float]]] = {"gzip": [], "identity": []}
            for name in runs:
                wrk(port, path, seconds=1, connections=args.connections, headers=[*auth, f"Accept-Encoding: {name}"])
            for _ in range(args.rounds):
                for name in runs:
                    runs[name].append(
                        wrk(
                            port,
                            path,
                            seconds=args.seconds,
                            connections=args.connections,
                            headers=[*auth, f"Accept-Encoding: {name}"],
                        )
                    )
    rows = {
        name: {key: statistics.median(run[key] for run in found) for key in found[0]} for name, found in runs.items()
    }
    levels = {level: compress_cost(plain_body, level) for level in (1, COMPRESS_LEVEL, 9)}
    ratio = measured["identity"] / measured["gzip"]
    when = dt.datetime.now(dt.UTC)
    where = "PostgreSQL" if database.startswith("postgresql") else "SQLite"
    section = "\n".join(
        [
            f"## Compression ({when:%Y-%m-%d %H:%M} UTC, {where}, {os.cpu_count()} cores)",
            "",
            f"`python -m bench.compression --seconds {args.seconds} --connections {args.connections} "
            f"--rounds {args.rounds}`: `GET {path.split('?')[0].rsplit('/', 3)[0]}/…/tasks?limit={PAGE}`, "
            f"one uvicorn worker, full edge, median of {args.rounds} alternating rounds.",
            "",
            "| Accept-Encoding | bytes on the wire | requests/s | p50 ms | p99 ms |",
            "|---|---:|---:|---:|---:|",
            *(
                f"| {name} | {measured[name]} | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} |"
                for name, row in rows.items()
            ),
            "",
            f"Ratio {ratio:.1f}:1; gzip changes throughput by "
            f"{100 * (rows['gzip']['rps'] / rows['identity']['rps'] - 1):+.1f}% on loopback (where bandwidth is free).",
            "",
            "| zlib level | µs to compress the page | bytes |",
            "|---|---:|---:|",
            *(
                f"| {level}{' (ours)' if level == COMPRESS_LEVEL else ''} | {cost['us']:.0f} | {cost['bytes']} |"
                for level, cost in levels.items()
            ),
        ]
    )
    print(section)
    record = {
        "date": when.isoformat(),
        "database": where,
        "args": vars(args),
        "bytes": measured,
        "ratio": ratio,
        "wrk": rows,
        "levels": levels,
    }
    save_results(f"compression-{where.lower()}-{when:%Y-%m-%d-%H%M}", record, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
