"""Build hook: the wheel ships the API docs pages' files, so an install serves /docs offline.

They are fetched with ``npm pack`` and verified by ``cc2api/docs_assets.py`` into a
temporary folder (never into the source tree, which may be read-only), and land in the
wheel as ``cc2api/static/<package>/<path>``. Editable installs skip this: they serve a
clone's ``.web/node_modules``, which ``scripts/_setup.sh`` fills the same way.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGED = "cc2api/static"


def load_docs_assets(root: Path) -> ModuleType:
    """Load cc2api/docs_assets.py by its path: cc2api's dependencies are not installed here."""
    path = root / "cc2api" / "docs_assets.py"
    spec = importlib.util.spec_from_file_location("_cc2api_docs_assets", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in sys.modules while the class is made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class DocsAssetsHook(BuildHookInterface[BuilderConfig]):
    """Adds the pinned Swagger UI and ReDoc files to the wheel."""

    scratch: Path | None = None

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Fetch and verify the assets, and have the wheel include them."""
        if version == "editable":
            return
        docs_assets = load_docs_assets(Path(self.root))
        self.scratch = Path(tempfile.mkdtemp(prefix="cc2api-docs-assets-"))
        static = self.scratch / "static"
        try:
            written = docs_assets.extract(docs_assets.fetch(self.scratch / "tarballs"), static)
        except docs_assets.FetchError as error:
            self._clean()
            raise SystemExit(f"error: {error}") from None
        for path in written:
            build_data["force_include"][str(path)] = f"{PACKAGED}/{path.relative_to(static)}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        """Remove the temporary folder once the wheel is written."""
        self._clean()

    def _clean(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
