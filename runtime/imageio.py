"""Reading images from disk with errors that name the file."""

from pathlib import Path

import cv2
import numpy as np
from siamese.runtime.errors import ImageError


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as a BGR uint8 array of shape (H, W, 3); grey files are expanded to 3 channels.

    Raises ImageError naming the file when it is missing or cannot be decoded.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc.strerror or exc}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageError(f"cannot decode image {path}: not an image or corrupt")
    return image
