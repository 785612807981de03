"""StoryShade shading server: shot bundles in, shaded animatic frames out.

Never imports bpy: the backend runs on machines with no Blender.
"""

import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"


def _wire_from_checkout() -> None:
    """`storyshade.wire` is the add-on's `addon/wire/` package (one copy for both sides).
    An installed wheel holds it as a sub-package (pyproject's package-dir mapping); run
    from a checkout (tests, `pip install -e`), it is loaded from addon/wire here."""
    here = Path(__file__).resolve().parent
    source = here.parents[1] / "addon" / "wire"
    if (here / "wire").is_dir() or not (source / "__init__.py").is_file():
        return
    spec = importlib.util.spec_from_file_location(
        f"{__name__}.wire", source / "__init__.py", submodule_search_locations=[str(source)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_wire_from_checkout()
