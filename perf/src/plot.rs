//! SVG charts for `--plot DIR` (being written).
