"""OPA bundles of a policy version: the directory OPA loads (``opa run --bundle DIR``, ``opa test DIR``).

A bundle holds exactly what the embedded engine evaluates, in OPA's bundle layout:

* every Rego module at its path relative to the policy directory (``*_test.rego`` included, so that
  ``opa test`` runs the same unit tests as ``gateway policy test``),
* ``data.json``: the one data document the embedded engine gets (``load_bundle``: the merged
  ``data/*.yaml`` plus the catalog as ``data.catalog``), at the data root,
* ``.manifest``: ``revision`` = the policy version (the content hash decisions and audit records name)
  and ``roots`` = the top-level names the bundle owns (its data keys and Rego package roots), so OPA
  refuses writes to them through its REST API.

The policy directory itself cannot be handed to OPA: OPA's loader would put ``data/grants.yaml`` under
``data.data.grants`` and merge the raw ``catalog.yaml`` at the data root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gateway.errors import PolicyUnavailable
from gateway.policy.engine import PolicyBundle, content_version

MANIFEST = ".manifest"
DATA_FILE = "data.json"
_PACKAGE_RE = re.compile(r"^package\s+([A-Za-z_]\w*)", re.MULTILINE)


def bundle_roots(bundle: PolicyBundle) -> list[str]:
    """The top-level paths the bundle owns: its data keys and the first segment of each Rego package."""
    roots = set(bundle.data)
    for text in [*bundle.modules.values(), *bundle.test_modules.values()]:
        match = _PACKAGE_RE.search(text)
        if match is not None:
            roots.add(match.group(1))
    return sorted(roots)


def manifest_of(bundle: PolicyBundle) -> dict[str, Any]:
    return {"revision": bundle.version, "roots": bundle_roots(bundle)}


def bundle_files(bundle: PolicyBundle, *, include_tests: bool = True) -> dict[str, str]:
    """Relative path -> text of every file of the bundle (modules, ``data.json``, ``.manifest``)."""
    files = dict(bundle.modules)
    if include_tests:
        files.update(bundle.test_modules)
    files[DATA_FILE] = json.dumps(bundle.data, ensure_ascii=False, sort_keys=True, indent=1) + "\n"
    files[MANIFEST] = json.dumps(manifest_of(bundle), ensure_ascii=False, indent=1) + "\n"
    return files


def _write_tree(root: Path, files: dict[str, str], mode: int) -> None:
    for name, text in sorted(files.items()):
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(mode)


def write_bundle(bundle: PolicyBundle, out_dir: Path, *, file_mode: int = 0o644) -> Path:
    """Write ``bundle`` to ``out_dir`` (created; a previous bundle there is replaced as a whole).

    The files are written to a temporary sibling directory first and moved into place, so a reader
    never sees half a bundle. A non-empty ``out_dir`` that is not a bundle (no ``.manifest``) is refused.
    """
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).exists():
        raise ValueError(f"{out_dir} is not empty and holds no bundle ({MANIFEST}); choose a new or empty "
                         "directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _write_tree(staging, bundle_files(bundle), file_mode)
        staging.chmod(0o755)
        old: Path | None = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old.{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(staging, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


#: marks the revision of a bundle that is being rewritten in place (never a policy version)
PUBLISHING_SUFFIX = "~publishing"


def publish_bundle(bundle: PolicyBundle, bundle_dir: Path, *, file_mode: int = 0o644) -> Path:
    """Update the bundle a running ``opa run --server --watch --bundle DIR`` serves, in place.

    OPA watches the directory itself, so it is not swapped like in ``write_bundle``; each file is written
    to a ``.tmp`` name OPA's loader ignores and renamed into place. A ``.manifest`` with an interim
    revision (``<version>~publishing``, equal to no policy version) goes first: while files change, OPA
    serves a revision the gateway can neither keep nor adopt, so it fails closed. The ``.manifest`` with
    the new revision goes last: OPA serves that revision only once every file is the new one. Files of the
    old version that the new one lacks are removed. A non-empty directory without a ``.manifest`` is
    refused (ValueError); an unwritable one raises OSError.
    """
    if bundle_dir.exists() and any(bundle_dir.iterdir()) and not (bundle_dir / MANIFEST).exists():
        raise ValueError(f"{bundle_dir} is not empty and holds no bundle ({MANIFEST}); set opa.bundle_dir to the "
                         "directory OPA serves (--bundle DIR)")
    bundle_dir.mkdir(parents=True, exist_ok=True)
    files = bundle_files(bundle)
    interim = {**json.loads(files[MANIFEST]), "revision": f"{bundle.version}{PUBLISHING_SUFFIX}"}
    _replace_file(bundle_dir / MANIFEST, json.dumps(interim, indent=2, sort_keys=True) + "\n", file_mode)
    for old in sorted(bundle_dir.rglob("*.rego")):
        if str(old.relative_to(bundle_dir)) not in files:
            old.unlink()
    for name, text in sorted(files.items()):
        if name != MANIFEST:
            _replace_file(bundle_dir / name, text, file_mode)
    _replace_file(bundle_dir / MANIFEST, files[MANIFEST], file_mode)
    return bundle_dir


def _replace_file(target: Path, text: str, mode: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    os.replace(tmp, target)


def read_bundle(bundle_dir: Path) -> PolicyBundle:
    """Load a bundle directory back (modules, ``data.json``, the manifest's revision as the version)."""
    manifest_path = bundle_dir / MANIFEST
    data_path = bundle_dir / DATA_FILE
    if not manifest_path.exists() or not data_path.exists():
        raise PolicyUnavailable(f"{bundle_dir} is not a policy bundle (needs {MANIFEST} and {DATA_FILE})",
                                code="policy_missing")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    data = json.loads(data_path.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or not isinstance(manifest.get("revision"), str) or not isinstance(data, dict):
        raise PolicyUnavailable(f"the bundle in {bundle_dir} has a malformed {MANIFEST} or {DATA_FILE}",
                                code="policy_invalid")
    modules: dict[str, str] = {}
    test_modules: dict[str, str] = {}
    for path in sorted(bundle_dir.rglob("*.rego")):
        name = str(path.relative_to(bundle_dir))
        (test_modules if name.endswith("_test.rego") else modules)[name] = path.read_text(encoding="utf-8")
    return PolicyBundle(modules=modules, data=data, version=manifest["revision"], test_modules=test_modules)


def recomputed_version(bundle: PolicyBundle) -> str:
    """The content hash of the bundle's modules and data; equals ``bundle.version`` unless it was altered."""
    return content_version(bundle.modules, bundle.data)


def bundle_main(out_dir: Path, policy_dir: Path, catalog_path: Path) -> int:
    """``gateway policy bundle OUT_DIR``: the tested policy as an OPA bundle. 0 on success, 1 if refused."""
    from gateway.policy.reload import load_candidate

    try:
        # the same gate as a reload: only a version that compiles, decides and passes its tests is bundled
        bundle = load_candidate(policy_dir, catalog_path, run_tests=True).bundle
    except PolicyUnavailable as exc:
        print(f"ERROR  {exc.detail}")
        return 1
    write_bundle(bundle, out_dir)
    print(f"bundle {bundle.version} written to {out_dir}: {len(bundle.modules)} modules, "
          f"{len(bundle.test_modules)} test modules, {DATA_FILE}, {MANIFEST} "
          f"(roots {', '.join(bundle_roots(bundle))})")
    return 0
