"""Where the hot path's time goes: py-spy samples the one uvicorn worker while wrk drives one
operation of `bench.hot_path`, and the top entries (own time, and time including callees, as a
share of the samples) are printed as Markdown.

Usage: ``DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test python -m
bench.profile_hot_path [--operation health] [--seconds 10] [--code-root PATH]``. ``--code-root``
serves the application code of another checkout (a ``git worktree`` of an older commit) with this
environment, for before/after profiles of the same request path. The raw collapsed stacks go to
build/profiles/ (open them in speedscope or inferno for a flame graph).
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import threading
from pathlib import Path

from bench.harness import serving, wrk
from bench.hot_path import _operations, seeded_environment, wrk_options

ROOT = Path(__file__).resolve().parent.parent
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    """`function (path/to/site-packages/pkg/mod.py:12)` -> `pkg/mod.py:function`."""
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{match['function']}"


def top_entries(collapsed: str, limit: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Read py-spy's raw (collapsed) output: one ``frame;frame;… count`` line per distinct stack.
    Returns (samples, the `limit` functions with most own samples, own samples summed per
    package or top-level folder, largest first), each entry (name, samples)."""
    own: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue  # a frame name with a line break in it (py-spy writes such names as they are)
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        packages[frames[-1].split("/", 1)[0].split(":", 1)[0].removesuffix(".py")] += count
    return samples, own.most_common(limit), packages.most_common()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operation", default="health", help="a part of the operation's name (case-insensitive)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--code-root", type=Path, default=ROOT, help="the checkout whose application code is served")
    args = parser.parse_args()
    out_dir = ROOT / "build" / "profiles"
    out_dir.mkdir(parents=True, exist_ok=True)
    with seeded_environment() as (env, user_id, email):
        env = {**env, "PYTHONPATH": str(args.code_root.resolve())}
        with serving("with_edge", env, cwd=args.code_root.resolve()) as (port, server):
            operations = _operations(port, email, user_id, args.connections)
            operation = next(op for op in operations if args.operation.lower() in op["name"].lower())
            raw = out_dir / f"{re.sub(r'[^a-z0-9]+', '-', operation['name'].lower()).strip('-')}.txt"
            spy = [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(server.pid),
                "--rate",
                str(args.rate),
                "--duration",
                str(args.seconds),
                "--format",
                "raw",
                "--gil",  # only the thread holding the GIL: Python's CPU time, not threads waiting
                "--output",
                str(raw),
            ]
            recorder = threading.Thread(target=subprocess.run, args=(spy,), kwargs={"capture_output": True})
            recorder.start()
            options = wrk_options(operation, args.connections)
            figures = wrk(port, operation["path"], seconds=args.seconds, **options)
            recorder.join()
    samples, own, packages = top_entries(raw.read_text(), args.top)
    code = subprocess.run(
        ["git", "-C", str(args.code_root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    print(f"### {operation['name']} — code at {code.stdout.strip()}, {figures['rps']:.0f} req/s under py-spy")
    print(f"\n{samples} samples at {args.rate}/s; raw stacks: {raw.relative_to(ROOT)}\n")
    print("| own time | function |\n|---:|---|")
    for name, count in own:
        print(f"| {100 * count / samples:.1f} % | `{name}` |")
    print("\n| own time | package or folder |\n|---:|---|")
    for name, count in packages:
        print(f"| {100 * count / samples:.1f} % | `{name}` |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
