"""Images in, faces out: decoding, detection, alignment, preprocessing, quality, sources."""
