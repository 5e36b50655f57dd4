"""Data layer: manifests -> sample dicts, through MONAI dictionary transforms."""
