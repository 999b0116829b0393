//! What the subcommands print and draw: result lines ([`Record`]: `key=value`, or one JSON
//! object per line with `--json`), progress on stderr ([`Progress`]) and SVG charts for
//! `--plot DIR` ([`write_svg`], plotters' SVG backend).
//!
//! A [`Chart`] is a set of named series of (x, y) points, drawn as one line (`<polyline>`)
//! and one dot (`<circle>`) per point for each series, with a legend, axis labels and a
//! title. The x axis is [`XScale::Linear`], [`XScale::Log10`] (flow counts: ticks at the
//! decades, 1k … 10M) or [`XScale::Nines`] (latency percentiles: x is drawn at
//! `-log10(1 - p/100)`, so 90, 99, 99.9, 99.99 are equally spaced and 50 sits at 0.3 of a
//! step). The y axis is [`YScale::Linear`] (from zero, or below when values are negative)
//! or [`YScale::Log10`] (values spanning orders of magnitude, such as latency in µs: each
//! decade 1, 10, 100, 1k takes the same height, labelled, with light lines at 2 … 9 times
//! each decade). A log axis, x or y, takes only positive values: [`check`] refuses the rest.
//! A log axis gets its ticks at the decades in range, or at 1, 2, 5 times them when fewer
//! than two decades fit.
//!
//! Text is measured with ab_glyph, which needs a font: DejaVu Sans
//! ([`FONT_PATH`], Debian package `fonts-dejavu-core`, installed by `ci/setup`) is loaded
//! once and registered as `sans-serif`. Its absence is an error naming the file and the
//! package. Text is written as SVG `<text>` elements (the viewer renders it).

use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::register_font;

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

/// How the y axis is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YScale {
    Linear,
    /// Logarithmic, for values spanning orders of magnitude (latency in µs).
    Log10,
}

impl YScale {
    /// The x scale drawn the same way (positions, ticks, labels are shared).
    fn as_x(self) -> XScale {
        match self {
            YScale::Linear => XScale::Linear,
            YScale::Log10 => XScale::Log10,
        }
    }
}

/// A line chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: XScale,
    pub y_scale: YScale,
    pub series: Vec<Series>,
}

/// The font text is measured with.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// The Debian package that provides [`FONT_PATH`].
pub const FONT_PACKAGE: &str = "fonts-dejavu-core";

/// Chart size in pixels.
const SIZE: (u32, u32) = (900, 560);

/// Line colours, one per series (cycled).
const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Percentiles that get a tick on a [`XScale::Nines`] axis (when in range).
const NINES_TICKS: [f64; 8] = [0.0, 50.0, 90.0, 99.0, 99.9, 99.99, 99.999, 99.9999];

/// Reads `path` and registers it as the `sans-serif` font, once per process (the first
/// outcome, success or error, is kept).
fn ensure_font() -> Result<(), String> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| load_font(Path::new(FONT_PATH))).clone()
}

/// Reads a TrueType font file and registers it as `sans-serif`.
pub fn load_font(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "plot: cannot read the chart font {} ({e}); install the Debian package {FONT_PACKAGE} (ci/setup does)",
            path.display()
        )
    })?;
    // plotters keeps a reference for the life of the process: leak the one copy.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| {
        format!(
            "plot: {} is not a usable TrueType font (package {FONT_PACKAGE})",
            path.display()
        )
    })
}

/// Where `x` is drawn on the axis of `scale`, after [`check`] accepted it.
fn to_axis(scale: XScale, x: f64) -> f64 {
    match scale {
        XScale::Linear => x,
        XScale::Log10 => x.log10(),
        XScale::Nines => -(1.0 - x / 100.0).log10(),
    }
}

/// The value whose axis position is `v` (the inverse of [`to_axis`]).
fn from_axis(scale: XScale, v: f64) -> f64 {
    match scale {
        XScale::Linear => v,
        XScale::Log10 => 10f64.powf(v),
        XScale::Nines => 100.0 * (1.0 - 10f64.powf(-v)),
    }
}

/// Refuses what cannot be drawn: no series, a series without points or name, values that
/// are not finite, x or y not positive on a log axis, x outside 0 ≤ p < 100 on a nines
/// axis.
pub fn check(chart: &Chart) -> Result<(), String> {
    if chart.series.is_empty() {
        return Err(format!("plot '{}': no series", chart.title));
    }
    for s in &chart.series {
        if s.name.is_empty() {
            return Err(format!("plot '{}': a series has no name", chart.title));
        }
        if s.points.is_empty() {
            return Err(format!(
                "plot '{}': series '{}' has no points",
                chart.title, s.name
            ));
        }
        for &(x, y) in &s.points {
            if !x.is_finite() || !y.is_finite() {
                return Err(format!(
                    "plot '{}': series '{}' has a point that is not a finite number: ({x}, {y})",
                    chart.title, s.name
                ));
            }
            let bad = match chart.x_scale {
                XScale::Linear => None,
                XScale::Log10 => (x <= 0.0).then_some("x must be positive on a log scale"),
                XScale::Nines => (!(0.0..100.0).contains(&x))
                    .then_some("x must be a percentile, 0 <= x < 100, on a nines scale"),
            };
            if let Some(why) = bad {
                return Err(format!(
                    "plot '{}': series '{}' has x = {x}: {why}",
                    chart.title, s.name
                ));
            }
            if chart.y_scale == YScale::Log10 && y <= 0.0 {
                return Err(format!(
                    "plot '{}': series '{}' has y = {y}: y must be positive on a log scale",
                    chart.title, s.name
                ));
            }
        }
    }
    Ok(())
}

/// A compact number: 1k, 20k, 1.5M, 0.25, 3.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let mut s = format!("{scaled:.3}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    if s == "-0" {
        s = "0".into();
    }
    format!("{s}{suffix}")
}

/// A label on a log axis: [`short_number`] (1k, 10M, 0.1), or `2e-4` below 0.001, where
/// three decimals no longer show the value.
fn log_label(v: f64) -> String {
    // 0.999e-3: 0.001 itself, computed as 10^-3, may come out a hair below.
    if v.abs() >= 0.999e-3 {
        return short_number(v);
    }
    let s = format!("{v:.3e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
    format!("{mantissa}e{exp}")
}

/// A percentile label: 50, 99.9, 99.99.
fn percentile_label(p: f64) -> String {
    let mut s = format!("{p:.6}");
    s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    s
}

/// (low, high) of `vals`, widened by 5% (or ±0.5 when all equal).
fn padded(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let span = hi - lo;
    if span <= 0.0 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo - span * 0.05, hi + span * 0.05)
    }
}

/// Positions (on a log axis: log10 of the value) between `lo` and `hi` of 1 times each
/// decade, or else 1, 2 and 5 times, or else 1 … 9 times, the first of these with at least
/// two ticks in range (possibly fewer when the range is narrower than a factor of 2).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mantissas: [&[f64]; 3] = [
        &[1.0],
        &[1.0, 2.0, 5.0],
        &[1.0, 2., 3., 4., 5., 6., 7., 8., 9.],
    ];
    let mut ticks = Vec::new();
    for m in mantissas {
        ticks = (lo.floor() as i32..=hi.ceil() as i32)
            .flat_map(|d| m.iter().map(move |&k| f64::from(d) + k.log10()))
            .filter(|v| (lo..=hi).contains(v))
            .collect();
        if ticks.len() >= 2 {
            break;
        }
    }
    ticks
}

/// Light grid positions on a log axis whose ticks are the decades: 2 … 9 times each decade.
fn log_minor(lo: f64, hi: f64) -> Vec<f64> {
    (lo.floor() as i32..=hi.ceil() as i32)
        .flat_map(|d| (2..10).map(move |k| f64::from(d) + f64::from(k).log10()))
        .filter(|v| (lo..=hi).contains(v))
        .collect()
}

/// Tick positions (on the axis) for the x axis: the decades (or 1, 2, 5 times them) or the
/// nines in range, or the distinct data positions when those are few (and for a linear axis
/// with few x values).
fn x_ticks(scale: XScale, data: &[f64], lo: f64, hi: f64) -> Option<Vec<f64>> {
    let mut distinct: Vec<f64> = data.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    let fixed: Vec<f64> = match scale {
        XScale::Linear => {
            return (distinct.len() <= 12).then_some(distinct);
        }
        XScale::Log10 => log_ticks(lo, hi),
        XScale::Nines => NINES_TICKS
            .iter()
            .map(|&p| to_axis(scale, p))
            .filter(|v| (lo..=hi).contains(v))
            .collect(),
    };
    Some(if fixed.len() >= 2 { fixed } else { distinct })
}

/// The upper corner over the lower data: the legend covers fewer points there.
fn legend_corner(series: &[(&str, Vec<(f64, f64)>)], x_lo: f64, x_hi: f64) -> SeriesLabelPosition {
    let third = (x_hi - x_lo) / 3.0;
    let top = |keep: &dyn Fn(f64) -> bool| {
        series
            .iter()
            .flat_map(|(_, p)| p.iter())
            .filter(|p| keep(p.0))
            .map(|p| p.1)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    if top(&|x| x <= x_lo + third) <= top(&|x| x >= x_hi - third) {
        SeriesLabelPosition::UpperLeft
    } else {
        SeriesLabelPosition::UpperRight
    }
}

/// Writes `chart` as an SVG file at `path` (creating its directory).
pub fn write_svg(path: &Path, chart: &Chart) -> Result<(), String> {
    check(chart)?;
    ensure_font()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let scale = chart.x_scale;
    let y_scale = chart.y_scale.as_x();
    let series: Vec<(&str, Vec<(f64, f64)>)> = chart
        .series
        .iter()
        .map(|s| {
            let pts = s
                .points
                .iter()
                .map(|&(x, y)| (to_axis(scale, x), to_axis(y_scale, y)));
            (s.name.as_str(), pts.collect())
        })
        .collect();
    let all = || series.iter().flat_map(|(_, p)| p.iter().copied());
    let (x_lo, x_hi) = padded(all().map(|p| p.0));
    let (y_min, y_max) = padded(all().map(|p| p.1));
    // Rates start at zero unless some are negative (a log axis has no zero); headroom on
    // top for the legend.
    let y_lo = match chart.y_scale {
        YScale::Linear => y_min.min(0.0),
        YScale::Log10 => y_min,
    };
    let y_hi = y_max + (y_max - y_lo) * 0.04 * chart.series.len() as f64;
    let (y_lo, y_hi) = if y_hi > y_lo {
        (y_lo, y_hi)
    } else {
        (y_lo, y_lo + 1.0)
    };
    let xs: Vec<f64> = all().map(|p| p.0).collect();
    let ys: Vec<f64> = all().map(|p| p.1).collect();
    let x_axis = Axis::new(scale, (x_lo, x_hi), x_ticks(scale, &xs, x_lo, x_hi));
    // A linear y axis keeps plotters' own ticks (round numbers from zero).
    let y_ticks = match chart.y_scale {
        YScale::Linear => None,
        YScale::Log10 => x_ticks(y_scale, &ys, y_lo, y_hi),
    };
    let y_axis = Axis::new(y_scale, (y_lo, y_hi), y_ticks);

    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut ctx = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x_axis, y_axis)
        .map_err(|e| err(&e))?;
    ctx.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        ctx.draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], colour.filled()));
        ctx.draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(|e| err(&e))?;
    }
    ctx.configure_series_labels()
        .position(legend_corner(&series, x_lo, x_hi))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// An axis (x, or y drawn as the x scale of the same name): positions already transformed
/// by [`to_axis`], ticks chosen by [`x_ticks`] (or plotters' own for a linear axis without
/// them), light lines between decade ticks on a log axis, labels in the data's units.
struct Axis {
    scale: XScale,
    inner: RangedCoordf64,
    ticks: Option<Vec<f64>>,
    minor: Vec<f64>,
}

impl Axis {
    fn new(scale: XScale, (lo, hi): (f64, f64), ticks: Option<Vec<f64>>) -> Axis {
        let decades = ticks
            .as_ref()
            .is_some_and(|t| t.iter().all(|v| v.fract() == 0.0));
        let minor = if scale == XScale::Log10 && decades {
            log_minor(lo, hi)
        } else {
            Vec::new()
        };
        Axis {
            scale,
            inner: (lo..hi).into(),
            ticks,
            minor,
        }
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        match &self.ticks {
            Some(_) if hint.weight().allow_light_points() => self.minor.clone(),
            Some(t) => t.clone(),
            None => self.inner.key_points(hint),
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, v: &f64) -> String {
        match self.scale {
            XScale::Linear => short_number(*v),
            XScale::Log10 => log_label(from_axis(self.scale, *v)),
            XScale::Nines => percentile_label(from_axis(self.scale, *v)),
        }
    }
}

/// One value of a result line.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Str(String),
    /// A number already formatted (as JSON accepts it; `null` in JSON when not finite).
    Num(String),
    /// Numbers: `a,b,c` as key=value, an array in JSON.
    List(Vec<String>),
}

/// One result line: `bench=NAME key=value …`, or with `--json` the same fields as one JSON
/// object (`{"bench":"NAME","key":value,…}`), keys in the order they were added. Numbers
/// are JSON numbers, strings JSON strings, lists JSON arrays (comma separated as key=value).
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    fields: Vec<(String, Value)>,
}

fn number(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "nan".into()
    }
}

impl Record {
    /// A line starting with `bench=NAME`.
    pub fn new(bench: &str) -> Record {
        Record {
            fields: vec![("bench".into(), Value::Str(bench.into()))],
        }
    }

    /// A string field (no spaces: key=value lines split on whitespace).
    pub fn str(mut self, key: &str, v: impl Into<String>) -> Record {
        self.fields.push((key.into(), Value::Str(v.into())));
        self
    }

    /// An integer field.
    pub fn int(mut self, key: &str, v: impl Into<i128>) -> Record {
        self.fields
            .push((key.into(), Value::Num(v.into().to_string())));
        self
    }

    /// A float with `decimals` decimals.
    pub fn float(mut self, key: &str, v: f64, decimals: usize) -> Record {
        self.fields
            .push((key.into(), Value::Num(number(v, decimals))));
        self
    }

    /// A boolean (`true`/`false` in both forms).
    pub fn flag(mut self, key: &str, v: bool) -> Record {
        self.fields.push((key.into(), Value::Num(v.to_string())));
        self
    }

    /// A float in its shortest exact form (`5`, `0.25`).
    pub fn real(mut self, key: &str, v: f64) -> Record {
        let text = if v.is_finite() {
            v.to_string()
        } else {
            "nan".into()
        };
        self.fields.push((key.into(), Value::Num(text)));
        self
    }

    /// Floats with `decimals` decimals each.
    pub fn floats(mut self, key: &str, v: &[f64], decimals: usize) -> Record {
        let items = v.iter().map(|&x| number(x, decimals)).collect();
        self.fields.push((key.into(), Value::List(items)));
        self
    }

    /// The line, as key=value or JSON.
    pub fn render(&self, json: bool) -> String {
        let json_num = |n: &String| {
            if n == "nan" {
                "null".to_string()
            } else {
                n.clone()
            }
        };
        let parts: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| {
                if json {
                    let v = match v {
                        Value::Str(s) => serde_json::Value::from(s.as_str()).to_string(),
                        Value::Num(n) => json_num(n),
                        Value::List(l) => {
                            format!("[{}]", l.iter().map(json_num).collect::<Vec<_>>().join(","))
                        }
                    };
                    format!("{}:{v}", serde_json::Value::from(k.as_str()))
                } else {
                    let v = match v {
                        Value::Str(s) | Value::Num(s) => s.clone(),
                        Value::List(l) => l.join(","),
                    };
                    format!("{k}={v}")
                }
            })
            .collect();
        if json {
            format!("{{{}}}", parts.join(","))
        } else {
            parts.join(" ")
        }
    }

    /// Prints the line on stdout.
    pub fn print(&self, json: bool) {
        println!("{}", self.render(json));
    }
}

/// Renders `key=value` pairs given as text: `k=v k=v` or, with `json`, one JSON object in
/// the same key order, where a value that is a plain JSON number (digits, `.`, `-`) stays
/// a number and anything else becomes an escaped string. For result lines built as text
/// (gateway, compare-ovs, datapath); [`Record`] is the typed form.
pub fn render_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, json: bool) -> String {
    if json {
        let body: Vec<String> = pairs
            .map(|(k, v)| {
                let key = serde_json::Value::from(k);
                let number = v.parse::<f64>().is_ok_and(f64::is_finite)
                    && v.bytes()
                        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
                    && serde_json::from_str::<serde_json::Number>(v).is_ok();
                if number {
                    format!("{key}:{v}")
                } else {
                    format!("{key}:{}", serde_json::Value::from(v))
                }
            })
            .collect();
        format!("{{{}}}", body.join(","))
    } else {
        pairs
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A result line built as text (`gateway`, `compare-ovs`, `datapath`): ordered key/value
/// pairs, rendered by [`render_pairs`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Line(Vec<(String, String)>);

impl Line {
    /// Appends `key=value`.
    pub fn push(&mut self, key: &str, value: impl ToString) {
        self.0.push((key.to_string(), value.to_string()));
    }

    /// Replaces the value of `key` where it already is (its place kept); nothing if absent.
    pub fn set(&mut self, key: &str, value: impl ToString) {
        if let Some(kv) = self.0.iter_mut().find(|(k, _)| k == key) {
            kv.1 = value.to_string();
        }
    }

    /// [`Line::push`], by value.
    pub fn with(mut self, key: &str, value: impl ToString) -> Line {
        self.push(key, value);
        self
    }

    /// The line, as key=value or JSON.
    pub fn render(&self, json: bool) -> String {
        render_pairs(self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())), json)
    }
}

/// Progress of a multi-case run on stderr: `[NAME i/N 3.1s] what`.
pub struct Progress {
    name: &'static str,
    start: Instant,
    n: usize,
    total: usize,
}

impl Progress {
    pub fn new(name: &'static str, total: usize) -> Progress {
        Progress {
            name,
            start: Instant::now(),
            n: 0,
            total,
        }
    }

    /// Announces the next case.
    pub fn case(&mut self, what: &str) {
        self.n += 1;
        eprintln!(
            "[{} {}/{} {:.1}s] {what}",
            self.name,
            self.n,
            self.total,
            self.start.elapsed().as_secs_f64()
        );
    }

    /// A note between cases (`[NAME 3.1s] what`).
    pub fn note(&self, what: &str) {
        eprintln!(
            "[{} {:.1}s] {what}",
            self.name,
            self.start.elapsed().as_secs_f64()
        );
    }
}

/// Checks before a run that `--plot DIR` can be written: creates `dir` and loads the font,
/// so a bad directory or a missing font fails before the measurements, not after.
pub fn prepare_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("--plot {}: {e}", dir.display()))?;
    ensure_font()
}

/// Writes `charts` as `DIR/NAME.svg` and says so on stderr; a chart without data is
/// skipped with a note. Returns the paths written.
pub fn write_all(dir: &Path, charts: &[(&str, Chart)]) -> Result<Vec<std::path::PathBuf>, String> {
    let mut written = Vec::new();
    for (name, chart) in charts {
        if chart.series.iter().all(|s| s.points.is_empty()) {
            eprintln!("plot: {name}: nothing measured for this chart, not drawn");
            continue;
        }
        let mut chart = chart.clone();
        chart.series.retain(|s| !s.points.is_empty());
        let path = dir.join(format!("{name}.svg"));
        write_svg(&path, &chart)?;
        eprintln!("plot: wrote {}", path.display());
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ticks: &[f64]) -> Vec<String> {
        ticks.iter().map(|&t| log_label(10f64.powf(t))).collect()
    }

    #[test]
    fn log_ticks_are_the_decades_in_range_or_1_2_5_times_them() {
        // 0.8 µs … 1.5 ms: the decades only.
        let t = log_ticks(0.8f64.log10(), 1500f64.log10());
        assert_eq!(values(&t), ["1", "10", "100", "1k"]);
        // 2.5 … 40: one decade inside, so 1, 2, 5 times.
        let t = log_ticks(2.5f64.log10(), 40f64.log10());
        assert_eq!(values(&t), ["5", "10", "20"]);
        // 3 … 4.5: 1 … 9 times.
        let t = log_ticks(3f64.log10(), 4.5f64.log10());
        assert_eq!(values(&t), ["3", "4"]);
        // Below 1 and far below.
        let t = log_ticks(-4.2, -0.9);
        assert_eq!(values(&t), ["1e-4", "0.001", "0.01", "0.1"]);
    }

    #[test]
    fn log_minor_lines_are_2_to_9_times_each_decade() {
        let m = log_minor(0.0, 2.0);
        assert_eq!(m.len(), 16);
        assert_eq!(values(&m[..8]), ["2", "3", "4", "5", "6", "7", "8", "9"]);
        assert_eq!(values(&m[8..9]), ["20"]);
        // Only a log axis with decade ticks gets them.
        let decades = Some(vec![0.0, 1.0, 2.0]);
        assert_eq!(
            Axis::new(XScale::Log10, (0.0, 2.0), decades.clone()).minor,
            m
        );
        assert!(Axis::new(XScale::Linear, (0.0, 2.0), decades)
            .minor
            .is_empty());
        let one_two_five = Some(vec![2f64.log10(), 5f64.log10(), 1.0]);
        assert!(Axis::new(XScale::Log10, (0.2, 1.1), one_two_five)
            .minor
            .is_empty());
    }

    #[test]
    fn a_log_y_axis_takes_only_positive_values() {
        let chart = |y_scale, y| Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_scale: XScale::Linear,
            y_scale,
            series: vec![Series {
                name: "s".into(),
                points: vec![(1.0, 5.0), (2.0, y)],
            }],
        };
        assert_eq!(check(&chart(YScale::Log10, 0.5)), Ok(()));
        assert_eq!(check(&chart(YScale::Linear, 0.0)), Ok(()));
        assert_eq!(check(&chart(YScale::Linear, -1.0)), Ok(()));
        for y in [0.0, -0.0, -3.0] {
            let e = check(&chart(YScale::Log10, y)).unwrap_err();
            assert_eq!(
                e,
                format!("plot 't': series 's' has y = {y}: y must be positive on a log scale")
            );
        }
    }

    #[test]
    fn y_positions_on_a_log_axis_are_the_decade_exponents() {
        let y = YScale::Log10.as_x();
        for (v, at) in [(1.0, 0.0), (10.0, 1.0), (100.0, 2.0), (0.01, -2.0)] {
            assert!((to_axis(y, v) - at).abs() < 1e-12, "{v}");
            assert!((from_axis(y, at) - v).abs() < 1e-9 * v, "{v}");
        }
        assert_eq!(to_axis(YScale::Linear.as_x(), 7.5), 7.5);
    }
}
