"""`make spec-diff`: fail on a breaking change to the contract, unless info.version's major changes.

Bundles the contract of the working tree (openapi/) and the one at a git reference (or in a
folder), and classifies every change with api-smart-diff (npm, pinned in package.json; run by
scripts/spec_diff.mjs). Only the HTTP surface counts: paths and their operations (shared
components are compared where operations use them), security and servers.

The reference, unless ``--base`` (``make spec-diff SPEC_BASE=…``) names one: the last tag
reachable from HEAD; else the merge base with origin/main, unless that is HEAD itself (on main);
else HEAD~1; else HEAD. Outside a git repository there is nothing to compare with: it says so
and passes.

One convention narrows "breaking": an enum the base contract marks ``x-extensible-enum: true``
is open — its description tells clients to expect values they do not know yet (Zalando's REST
guideline 112; Google AIP-126) — so a value added to it, in a response too, is not breaking;
likewise a branch added to a ``oneOf`` marked ``x-extensible-oneOf: true`` (a union of event
shapes told apart by a type that is itself an open enum). The mark must already be in the base:
marking and growing in one change still fails.

Exit status: 0 when nothing breaks (or the major version changed), 1 on a breaking change,
2 when the comparison could not be made.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.contract import bundle  # noqa: E402  (the project root is on the path only now)

DIFF_SCRIPT = Path(__file__).with_suffix(".mjs")
SURFACE = ("paths", "security", "servers")
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
SHOWN = 60


class SpecDiffError(RuntimeError):
    """The comparison could not be made (no such reference, no node, a broken contract)."""


@dataclass(frozen=True)
class Change:
    """One change as api-smart-diff classified it."""

    type: str
    action: str
    path: tuple[str | int, ...]
    description: str

    @property
    def on_surface(self) -> bool:
        """A change clients see: under paths, security or servers, or to a security scheme."""
        scheme = tuple(self.path[:2]) == ("components", "securitySchemes")
        return bool(self.path) and (self.path[0] in SURFACE or scheme)

    def where(self) -> str:
        """``POST /api/v1/… > requestBody/…`` for an operation's change, else the JSON pointer."""
        parts = [str(part) for part in self.path]
        if len(parts) >= 3 and parts[0] == "paths" and parts[2] in HTTP_METHODS:
            rest = "/".join(parts[3:])
            return f"{parts[2].upper()} {parts[1]}" + (f" > {rest}" if rest else "")
        return "/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _git(repo: Path, *args: str) -> str | None:
    """Output of a git command in `repo`, or None when it fails."""
    git = shutil.which("git")
    if git is None:
        return None
    result = subprocess.run([git, "-C", str(repo), *args], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def default_base(repo: Path) -> tuple[str, str] | None:
    """The reference to compare with and what it is (see the module docstring), or None outside
    a git repository."""
    head = _git(repo, "rev-parse", "--verify", "--quiet", "HEAD")
    if head is None:
        return None
    tag = _git(repo, "describe", "--tags", "--abbrev=0", "HEAD")
    if tag:
        return tag, "the last tag"
    if _git(repo, "rev-parse", "--verify", "--quiet", "refs/remotes/origin/main"):
        merge_base = _git(repo, "merge-base", "HEAD", "origin/main")
        if merge_base and merge_base != head:
            return merge_base, "the merge base with origin/main"
    if _git(repo, "rev-parse", "--verify", "--quiet", "HEAD~1"):
        return "HEAD~1", "the previous commit"
    return "HEAD", "the last commit"


def contract_at(repo: Path, ref: str, spec_dir: Path, into: Path) -> Path | None:
    """Extract the split contract folder as it was at `ref` into `into`; its root document, or
    None when the folder did not exist then.

    Raises:
        SpecDiffError: `ref` names no commit.
    """
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") is None:
        raise SpecDiffError(f"{ref!r} names no commit in {repo}")
    top = Path(_git(repo, "rev-parse", "--show-toplevel") or repo).resolve()
    relative = spec_dir.resolve().relative_to(top)
    archive = subprocess.run(
        [shutil.which("git") or "git", "-C", str(top), "archive", "--format=tar", ref, "--", relative.as_posix()],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    root = into / relative / "openapi.yaml"
    return root if root.exists() else None


def classify(before: dict[str, Any], after: dict[str, Any], workdir: Path) -> list[Change]:
    """Every change from `before` to `after`, classified by api-smart-diff.

    Raises:
        SpecDiffError: node is missing or the diff tool failed.
    """
    node = shutil.which("node")
    if node is None:
        raise SpecDiffError("node is not installed (api-smart-diff runs on Node.js)")
    files = []
    for name, document in (("before.json", before), ("after.json", after)):
        path = workdir / name
        path.write_text(json.dumps(document), encoding="utf-8")
        files.append(str(path))
    result = subprocess.run([node, str(DIFF_SCRIPT), *files], cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SpecDiffError(f"api-smart-diff failed:\n{result.stderr}")
    return [
        Change(item["type"], item["action"], tuple(item["path"]), item["description"])
        for item in json.loads(result.stdout)
    ]


def _resolved(document: Any, root: dict[str, Any]) -> Any:
    """`document`, or what its local ``$ref`` (``#/components/…``) points at, followed to the end."""
    for _hop in range(32):
        if not (isinstance(document, dict) and isinstance(document.get("$ref"), str)):
            return document
        target: Any = root
        for part in document["$ref"].removeprefix("#/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        document = target
    return document


OPEN_MARKS = {"enum": "x-extensible-enum", "oneOf": "x-extensible-oneOf"}
"""The list keyword of a schema, and the mark that declares that list open."""


def added_to_open_enum(change: Change, before: dict[str, Any]) -> bool:
    r"""True when `change` adds a value to an enum that `before` marks ``x-extensible-enum: true``,
    or a branch to a ``oneOf`` it marks ``x-extensible-oneOf: true`` (the path ends
    ``…/enum/<index>`` or ``…/oneOf/<index>`` and, walked through `before` following
    ``$ref``\ s, ends at such a schema)."""
    if change.action != "add" or len(change.path) < 2 or change.path[-2] not in OPEN_MARKS:
        return False
    mark = OPEN_MARKS[str(change.path[-2])]
    node: Any = before
    for part in change.path[:-2]:
        node = _resolved(node, before)
        if isinstance(node, dict):
            node = node.get(str(part))
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    node = _resolved(node, before)
    return isinstance(node, dict) and node.get(mark) is True


def major(version: str) -> int:
    """The major number of a semantic version such as ``1.4.2``."""
    return int(version.split(".", 1)[0])


def compare(before: dict[str, Any], after: dict[str, Any], *, against: str) -> tuple[int, str]:
    """Exit status and report of the comparison of two bundled contracts."""
    with tempfile.TemporaryDirectory(prefix="charter-spec-diff-") as tmp:
        changes = [change for change in classify(before, after, Path(tmp)) if change.on_surface]
    opened = [change for change in changes if change.type == "breaking" and added_to_open_enum(change, before)]
    changes = [change for change in changes if change not in opened]
    breaking = [change for change in changes if change.type == "breaking"]
    counts = {kind: sum(change.type == kind for change in changes) for kind in sorted({c.type for c in changes})}
    if opened:
        counts["added to an open enum or union (allowed)"] = len(opened)
    old, new = before["info"]["version"], after["info"]["version"]
    lines = [
        f"spec-diff: the contract (version {new}) against {against} (version {old}): "
        + (", ".join(f"{count} {kind}" for kind, count in counts.items()) or "no change to the HTTP surface")
    ]
    for change in breaking[:SHOWN]:
        lines.append(f"  breaking: {change.description or change.action} at {change.where()}")
    if len(breaking) > SHOWN:
        lines.append(f"  … and {len(breaking) - SHOWN} more")
    if not breaking:
        return 0, "\n".join(lines)
    if major(new) != major(old):
        lines.append(f"spec-diff: allowed, info.version's major changed ({old} -> {new})")
        return 0, "\n".join(lines)
    lines.append(
        f"spec-diff: {len(breaking)} breaking change(s) with the same major version ({old} -> {new}): "
        "make the change additive, or bump info.version's major (and the URL's /api/vN, API_STYLE)"
    )
    return 1, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--base", help="git reference to compare with (default: see the module docstring)")
    source.add_argument("--base-dir", type=Path, help="a split contract folder to compare with instead of a git ref")
    parser.add_argument("--spec-dir", type=Path, default=ROOT / "openapi", help="the contract to check (openapi/)")
    args = parser.parse_args(argv)
    spec_dir = args.spec_dir.resolve()
    try:
        after = bundle(spec_dir / "openapi.yaml")
        if args.base_dir:
            before, against = bundle(args.base_dir.resolve() / "openapi.yaml"), str(args.base_dir)
        else:
            found = (args.base, "named by --base") if args.base else default_base(spec_dir)
            if found is None:
                print("spec-diff: not in a git repository, nothing to compare with")
                return 0
            ref, what = found
            with tempfile.TemporaryDirectory(prefix="charter-spec-base-") as tmp:
                root = contract_at(spec_dir, ref, spec_dir, Path(tmp))
                if root is None:
                    print(f"spec-diff: {ref} has no contract at {spec_dir.name}/, nothing to compare with")
                    return 0
                before = bundle(root)
            sha = _git(spec_dir, "rev-parse", "--short", f"{ref}^{{commit}}") or ref
            against = f"{sha}, {what}" if ref.startswith(sha) else f"{ref} [{sha}, {what}]"
        status, report = compare(before, after, against=against)
    except (SpecDiffError, ValueError, OSError) as error:
        print(f"spec-diff: {error}", file=sys.stderr)
        return 2
    print(report)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
