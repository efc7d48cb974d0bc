"""Static images of figures, without a browser (kaleido 0.2.1 bundles its own renderer)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.errors import ConfigError
from tunelab.viz._common import INSTALL_HINT, load_go

if TYPE_CHECKING:
    import plotly.graph_objects as go

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp"}


def save_image(
    fig: go.Figure, path: str | os.PathLike[str], *, width: int = 1000, height: int = 600, scale: float = 1.0
) -> Path:
    """Write ``fig`` as an image; the format comes from the suffix (.png, .svg, .pdf; also .jpg, .webp).

    Renders with kaleido 0.2.1, which needs no browser. The file is written atomically (a temporary
    file beside it, then renamed) and its folder created. Returns the path. ConfigError for another
    suffix, a size that is not a positive number, or when kaleido is missing.
    """
    go_ = load_go()
    if not isinstance(fig, go_.Figure):
        raise ConfigError(f"save_image needs a plotly Figure, got {type(fig).__name__}")
    target = Path(path)
    fmt = FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise ConfigError(f"save_image: cannot tell the format of {str(target)!r}; end the name with one of "
                          f"{', '.join(sorted(FORMATS))}")
    for arg, value in (("width", width), ("height", height), ("scale", scale)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"save_image({arg}=...) must be a positive number, got {value!r}")
    try:
        import kaleido  # noqa: F401
    except ImportError:  # pragma: no cover - kaleido is installed in the test environment
        raise ConfigError(f"save_image needs kaleido 0.2.1: {INSTALL_HINT}") from None
    import plotly.io as pio

    data = pio.to_image(fig, format=fmt, width=int(width), height=int(height), scale=scale, engine="kaleido")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
