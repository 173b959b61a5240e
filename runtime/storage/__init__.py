"""What the runtime keeps on disk: atomic files, keys, templates, galleries, folder listings."""
