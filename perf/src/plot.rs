//! SVG charts for `--plot DIR` (plotters, SVG backend). Being written: the API below is
//! fixed so that subcommands can call it; the drawing is filled in by the plot owner.

use std::path::Path;

/// One line of a chart: a name for the legend and its points (x, y), in x order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// How the x axis is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XScale {
    Linear,
    /// Logarithmic (flow counts 1k … 10M).
    Log10,
    /// Latency percentiles: x is a percentile in 0..100, drawn as "nines"
    /// (50, 90, 99, 99.9, 99.99 equally spaced).
    Nines,
}

/// A line chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: XScale,
    pub series: Vec<Series>,
}

/// Writes `chart` as an SVG file at `path` (creating its directory).
pub fn write_svg(path: &Path, chart: &Chart) -> Result<(), String> {
    let _ = (path, chart);
    Err("plot: not implemented yet".into())
}
