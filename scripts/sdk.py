"""`make sdk`: generate the contract's SDKs from the bundled contract into build/sdk/.

* ``build/sdk/python``: a Python client package (openapi-python-client, setuptools metadata,
  so ``pip install build/sdk/python`` works offline), package ``charter_api_client``;
* ``build/sdk/typescript/charter.d.ts``: TypeScript types (openapi-typescript), for
  ``import type { paths, components } from ".../charter"``.

Any warning from either generator fails the run: the fix belongs in the contract (openapi/),
never in the generated code. Exit status 0 when both are generated cleanly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SPEC = ROOT / "build" / "openapi.json"
OUT = ROOT / "build" / "sdk"


class GenerationError(RuntimeError):
    """A generator failed or warned; the message holds its output."""


def _run(command: list[str], *, what: str) -> str:
    """Run a generator; its combined output. Fails on a non-zero exit and on any warning."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # ruff for the post-hooks
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0 or "warn" in output.lower():
        raise GenerationError(f"{what} failed or warned (exit {result.returncode}):\n{output}")
    return output


def generate(spec: Path = SPEC, out: Path = OUT) -> list[Path]:
    """Generate both SDKs from `spec` into `out` (replacing earlier ones); the paths written.

    Raises:
        GenerationError: a generator exited non-zero or printed a warning.
    """
    if not spec.exists():
        from server.contract import main as write_bundle

        write_bundle(["--out", str(spec)])
    python_out = out / "python"
    shutil.rmtree(python_out, ignore_errors=True)
    _run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(python_out),
            "--meta",
            "setup",
            "--fail-on-warning",
        ],
        what="openapi-python-client",
    )
    types_out = out / "typescript" / "charter.d.ts"
    types_out.parent.mkdir(parents=True, exist_ok=True)
    # Reads redocly.yaml (the contract is linted once more on the way) from the working folder.
    _run(
        [str(ROOT / "node_modules" / ".bin" / "openapi-typescript"), str(spec), "--output", str(types_out)],
        what="openapi-typescript",
    )
    return [python_out, types_out]


def main(argv: list[str] | None = None) -> int:
    """CLI: generate both SDKs; print where they went, or the generator's complaint."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=SPEC, help="the bundled contract (default build/openapi.json)")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the SDKs (default build/sdk)")
    args = parser.parse_args(argv)
    try:
        written = generate(args.spec.resolve(), args.out.resolve())
    except GenerationError as error:
        print(error, file=sys.stderr)
        return 1
    for path in written:
        print(f"sdk: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
