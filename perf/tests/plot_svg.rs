//! `perf/src/plot.rs` draws what it is given: a well-formed SVG with the title, the axis
//! labels, the series names in the legend, one line per series and one dot per point; and
//! refuses what cannot be drawn with an error, not a panic. On a log y axis the decades are
//! labelled and take equal heights.

#[allow(dead_code)]
#[path = "../src/plot.rs"]
mod plot;

use std::path::{Path, PathBuf};

use plot::{write_svg, Chart, Series, XScale, YScale};

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ctgate-plot-test-{}-{name}", std::process::id()))
}

/// Checks that `svg` is well-formed XML as far as plotters writes it (declaration,
/// elements, quoted attributes, text, escaped entities): every tag closes in order and
/// there is one root. Returns the element names in document order.
fn well_formed(svg: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = svg.trim_start();
    if let Some(r) = rest.strip_prefix("<?xml") {
        rest = &r[r.find("?>").expect("unterminated XML declaration") + 2..];
    }
    let mut roots = 0;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        assert!(
            !stack.is_empty() || text.trim().is_empty(),
            "text outside the root: {text:?}"
        );
        check_entities(text);
        let gt = rest[lt..].find('>').expect("unterminated tag") + lt;
        let tag = &rest[lt + 1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack
                .pop()
                .unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(open, name.trim(), "mismatched close tag");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name: String = body.chars().take_while(|c| !c.is_whitespace()).collect();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "bad tag <{tag}>"
        );
        check_attributes(&body[name.len()..]);
        if stack.is_empty() {
            roots += 1;
        }
        names.push(name.clone());
        if !self_closing {
            stack.push(name);
        }
    }
    assert!(rest.trim().is_empty(), "text after the root: {rest:?}");
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert_eq!(roots, 1, "one root element");
    names
}

/// `name="value"` pairs, values without `<` or raw `&`.
fn check_attributes(mut s: &str) {
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return;
        }
        let eq = s
            .find('=')
            .unwrap_or_else(|| panic!("attribute without value: {s}"));
        let name = s[..eq].trim();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-:_".contains(c)),
            "bad attribute name {name:?}"
        );
        let v = &s[eq + 1..];
        let q = v.chars().next().expect("attribute value");
        assert!(q == '"' || q == '\'', "unquoted attribute {name}");
        let end = v[1..].find(q).expect("unterminated attribute") + 1;
        let value = &v[1..end];
        assert!(!value.contains('<'), "< in attribute {name}");
        check_entities(value);
        s = &v[end + 1..];
    }
}

fn check_entities(text: &str) {
    for (i, _) in text.match_indices('&') {
        let ent = &text[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"]
                .iter()
                .any(|e| ent.starts_with(e)),
            "raw & in {text:?}"
        );
    }
}

/// The text content of every `<text>` element.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let start = t.find('>').unwrap() + 1;
            let end = t.find("</text>").unwrap();
            t[start..end]
                .trim()
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        })
        .collect()
}

/// The number of points of each series line (the 2-pixel polylines), in drawing order.
fn data_lines(svg: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .map(|p| &p[..p.find('>').unwrap()])
        .filter(|p| p.contains(r#"stroke-width="2""#))
        .map(|p| {
            let v = &p[p.find(r#"points=""#).unwrap() + 8..];
            v[..v.find('"').unwrap()].split_whitespace().count()
        })
        .collect()
}

/// The value of attribute `attr` (a number) of every `<circle>` (the data points), in
/// drawing order.
fn circles(svg: &str, attr: &str) -> Vec<f64> {
    let key = format!(" {attr}=\"");
    svg.split("<circle")
        .skip(1)
        .map(|c| {
            let v = &c[c.find(&key).unwrap() + key.len()..];
            v[..v.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

/// The y axis tick labels (right-aligned text left of the plot) with their height, top
/// down.
fn y_ticks(svg: &str) -> Vec<(String, f64)> {
    let mut ticks: Vec<(String, f64)> = svg
        .split("<text")
        .skip(1)
        .filter(|t| t[..t.find('>').unwrap()].contains(r#"text-anchor="end""#))
        .map(|t| {
            let y = &t[t.find(" y=\"").unwrap() + 4..];
            let y: f64 = y[..y.find('"').unwrap()].parse().unwrap();
            let text = &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()];
            (text.trim().to_string(), y)
        })
        .collect();
    ticks.sort_by(|a, b| a.1.total_cmp(&b.1));
    ticks
}

/// The heights of the light horizontal grid lines (the minor lines of a log axis).
fn light_rows(svg: &str) -> Vec<f64> {
    svg.split("<line")
        .skip(1)
        .map(|l| &l[..l.find('>').unwrap()])
        .filter(|l| l.contains(r#"opacity="0.1""#))
        .filter_map(|l| {
            let attr = |k: &str| -> f64 {
                let v = &l[l.find(&format!(" {k}=\"")).unwrap() + k.len() + 3..];
                v[..v.find('"').unwrap()].parse().unwrap()
            };
            (attr("y1") == attr("y2")).then(|| attr("y1"))
        })
        .collect()
}

fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

fn series(name: &str, points: &[(f64, f64)]) -> Series {
    Series {
        name: name.into(),
        points: points.to_vec(),
    }
}

fn chart(title: &str, x_scale: XScale, series: Vec<Series>) -> Chart {
    Chart {
        title: title.into(),
        x_label: "x axis words".into(),
        y_label: "y axis words".into(),
        x_scale,
        y_scale: YScale::Linear,
        series,
    }
}

fn log_y(c: Chart) -> Chart {
    Chart {
        y_scale: YScale::Log10,
        ..c
    }
}

fn write(dir: &Path, file: &str, c: &Chart) -> String {
    let path = dir.join(file);
    write_svg(&path, c).unwrap_or_else(|e| panic!("{file}: {e}"));
    std::fs::read_to_string(&path).unwrap()
}

#[test]
fn each_scale_draws_title_labels_series_lines_and_points() {
    let dir = scratch("scales").join("nested/dir");
    let cases = [
        (
            XScale::Linear,
            vec![
                series("1k conns", &[(1.0, 2.0e6), (2.0, 3.9e6)]),
                series("1M conns", &[(1.0, 1.1e6), (2.0, 2.0e6)]),
            ],
            ["1", "2"].as_slice(),
        ),
        (
            XScale::Log10,
            vec![
                series(
                    "prefetch on",
                    &[
                        (1e3, 20.0),
                        (1e4, 18.5),
                        (1e5, 12.0),
                        (1e6, 6.0),
                        (1e7, 4.0),
                    ],
                ),
                series("prefetch off", &[(1e3, 15.0), (1e7, 2.0)]),
                series("third <&> series", &[(5e3, 1.0), (5e6, 0.5), (9e6, 0.25)]),
            ],
            ["1k", "10k", "100k", "1M", "10M"].as_slice(),
        ),
        (
            XScale::Nines,
            vec![series(
                "ctgate",
                &[
                    (50.0, 1.2),
                    (90.0, 1.9),
                    (99.0, 3.5),
                    (99.9, 8.0),
                    (99.99, 20.0),
                ],
            )],
            ["50", "90", "99", "99.9", "99.99"].as_slice(),
        ),
    ];
    for (i, (scale, ser, ticks)) in cases.into_iter().enumerate() {
        let title = format!("Chart {i} of {scale:?} & co");
        let c = chart(&title, scale, ser.clone());
        let svg = write(&dir, &format!("c{i}.svg"), &c);
        let names = well_formed(&svg);
        assert_eq!(names[0], "svg", "{scale:?}");
        let t = texts(&svg);
        for want in [title.as_str(), "x axis words", "y axis words"] {
            assert!(
                t.iter().any(|x| x == want),
                "{scale:?}: no {want:?} in {t:?}"
            );
        }
        for s in &ser {
            assert_eq!(
                t.iter().filter(|x| **x == s.name).count(),
                1,
                "{scale:?}: legend entry {:?} in {t:?}",
                s.name
            );
        }
        for tick in ticks {
            assert!(
                t.iter().any(|x| x == tick),
                "{scale:?}: tick {tick} in {t:?}"
            );
        }
        // One line per series through its points (axes and ticks are 1-pixel black
        // polylines), one dot per point.
        let lines = data_lines(&svg);
        assert_eq!(
            lines,
            ser.iter().map(|s| s.points.len()).collect::<Vec<_>>(),
            "{scale:?}"
        );
        let points: usize = ser.iter().map(|s| s.points.len()).sum();
        assert_eq!(count(&names, "circle"), points, "{scale:?}");
    }
    if std::env::var_os("KEEP_PLOTS").is_none() {
        let _ = std::fs::remove_dir_all(scratch("scales"));
    }
}

#[test]
fn nines_are_equally_spaced() {
    let dir = scratch("nines");
    let c = chart(
        "latency",
        XScale::Nines,
        vec![series(
            "p",
            &[(90.0, 1.0), (99.0, 1.0), (99.9, 1.0), (99.99, 1.0)],
        )],
    );
    let svg = write(&dir, "n.svg", &c);
    let xs = circles(&svg, "cx");
    assert_eq!(xs.len(), 4);
    let steps: Vec<f64> = xs.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(steps[0] > 10.0, "{xs:?}");
    for s in &steps {
        // Pixel rounding only.
        assert!((s - steps[0]).abs() <= 1.0, "{xs:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_log_y_axis_labels_the_decades_and_draws_them_equally_spaced() {
    let dir = scratch("logy");
    // Latency in µs over percentiles, as `datapath --plot` draws it.
    let points = [(50.0, 1.0), (90.0, 10.0), (99.0, 100.0), (99.9, 1000.0)];
    let c = log_y(chart(
        "latency",
        XScale::Nines,
        vec![series("steady", &points)],
    ));
    let svg = write(&dir, "log.svg", &c);
    well_formed(&svg);
    let ticks = y_ticks(&svg);
    let labels: Vec<&str> = ticks.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(labels, ["1k", "100", "10", "1"], "{ticks:?}");
    let ys = circles(&svg, "cy");
    assert_eq!(ys.len(), 4);
    // 1, 10, 100, 1000 µs: each a step higher (smaller y) than the last, equal steps up to
    // pixel rounding, and each drawn at the height of its decade's label.
    let steps: Vec<f64> = ys.windows(2).map(|w| w[0] - w[1]).collect();
    assert!(steps[0] > 50.0, "{ys:?}");
    for s in &steps {
        assert!((s - steps[0]).abs() <= 1.0, "{ys:?}");
    }
    for (y, (label, tick_y)) in ys.iter().zip(ticks.iter().rev()) {
        assert!(
            (y - tick_y).abs() <= 1.0,
            "{label} at {tick_y}, point at {y}"
        );
    }
    // Light lines at 2 … 9 times each decade: eight between two decade labels.
    let minor = light_rows(&svg);
    let between = |lo: f64, hi: f64| minor.iter().filter(|&&y| y < lo && y > hi).count();
    assert_eq!(between(ticks[3].1, ticks[2].1), 8, "{minor:?} {ticks:?}");
    assert_eq!(between(ticks[1].1, ticks[0].1), 8, "{minor:?} {ticks:?}");

    // The same points on a linear axis: 1, 10 and 100 crowd at the bottom.
    let svg = write(
        &dir,
        "linear.svg",
        &Chart {
            y_scale: YScale::Linear,
            ..c
        },
    );
    let ys = circles(&svg, "cy");
    assert!(ys[0] - ys[1] < (ys[2] - ys[3]) / 10.0, "{ys:?}");
    assert!(
        !y_ticks(&svg).iter().any(|t| t.0 == "1"),
        "linear ticks from 0"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_log_y_axis_narrower_than_two_decades_ticks_at_1_2_5() {
    let dir = scratch("logy125");
    let c = log_y(chart(
        "narrow",
        XScale::Nines,
        vec![series("a", &[(50.0, 2.5), (99.0, 40.0)])],
    ));
    let svg = write(&dir, "n.svg", &c);
    let labels: Vec<String> = y_ticks(&svg).into_iter().map(|t| t.0).collect();
    assert_eq!(labels, ["50", "20", "10", "5"], "{labels:?}");
    assert!(
        light_rows(&svg).is_empty(),
        "no minor lines without decade ticks"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dir = scratch("bad");
    let bad = [
        (chart("no series", XScale::Linear, vec![]), "no series"),
        (
            chart("empty", XScale::Linear, vec![series("a", &[])]),
            "series 'a' has no points",
        ),
        (
            chart("nan", XScale::Linear, vec![series("a", &[(1.0, f64::NAN)])]),
            "not a finite number",
        ),
        (
            chart(
                "inf",
                XScale::Linear,
                vec![series("a", &[(f64::INFINITY, 1.0)])],
            ),
            "not a finite number",
        ),
        (
            chart(
                "log0",
                XScale::Log10,
                vec![series("a", &[(0.0, 1.0), (10.0, 1.0)])],
            ),
            "x must be positive on a log scale",
        ),
        (
            chart("logneg", XScale::Log10, vec![series("a", &[(-5.0, 1.0)])]),
            "x must be positive on a log scale",
        ),
        (
            chart("p100", XScale::Nines, vec![series("a", &[(100.0, 1.0)])]),
            "percentile",
        ),
        (
            log_y(chart(
                "logy0",
                XScale::Nines,
                vec![series("a", &[(50.0, 3.0), (99.0, 0.0)])],
            )),
            "series 'a' has y = 0: y must be positive on a log scale",
        ),
        (
            log_y(chart(
                "logyneg",
                XScale::Linear,
                vec![series("a", &[(1.0, -2.0)])],
            )),
            "has y = -2: y must be positive on a log scale",
        ),
        (
            chart("noname", XScale::Linear, vec![series("", &[(1.0, 1.0)])]),
            "has no name",
        ),
    ];
    for (c, want) in bad {
        let path = dir.join(format!("{}.svg", c.title));
        let e = write_svg(&path, &c).expect_err(&c.title);
        assert!(e.contains(want), "{}: {e}", c.title);
        assert!(!path.exists(), "{}: no file for bad input", c.title);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_font_names_the_file_and_the_package() {
    let e = plot::load_font(Path::new("/nonexistent/DejaVuSans.ttf")).unwrap_err();
    assert!(e.contains("/nonexistent/DejaVuSans.ttf"), "{e}");
    assert!(e.contains("fonts-dejavu-core"), "{e}");
    let not_a_font = scratch("notafont.ttf");
    std::fs::write(&not_a_font, b"hello").unwrap();
    let e = plot::load_font(&not_a_font).unwrap_err();
    assert!(e.contains("not a usable TrueType font"), "{e}");
    let _ = std::fs::remove_file(&not_a_font);
}

#[test]
fn single_points_and_flat_series_still_draw() {
    let dir = scratch("single");
    for scale in [XScale::Linear, XScale::Log10, XScale::Nines] {
        let c = chart("one", scale, vec![series("only", &[(50.0, 0.0)])]);
        let svg = write(&dir, &format!("{scale:?}.svg"), &c);
        let names = well_formed(&svg);
        assert_eq!(count(&names, "circle"), 1, "{scale:?}");
        let c = log_y(chart("one", scale, vec![series("only", &[(50.0, 7.0)])]));
        let svg = write(&dir, &format!("{scale:?}-logy.svg"), &c);
        let names = well_formed(&svg);
        assert_eq!(count(&names, "circle"), 1, "{scale:?} log y");
        assert!(y_ticks(&svg).len() >= 2, "{scale:?} log y");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn records_render_as_key_value_and_as_json() {
    let r = plot::Record::new("x")
        .int("n", 3u32)
        .float("rate", 1.23456, 2)
        .float("bad", f64::NAN, 2)
        .real("secs", 0.5)
        .flag("on", true)
        .str("path", "/tmp/a \"b\"")
        .floats("per", &[1.0, 2.5], 1);
    assert_eq!(
        r.render(false),
        "bench=x n=3 rate=1.23 bad=nan secs=0.5 on=true path=/tmp/a \"b\" per=1.0,2.5"
    );
    let v: serde_json::Value = serde_json::from_str(&r.render(true)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"bench": "x", "n": 3, "rate": 1.23, "bad": null, "secs": 0.5,
            "on": true, "path": "/tmp/a \"b\"", "per": [1.0, 2.5]})
    );
    // Keys keep their order.
    assert!(r
        .render(true)
        .starts_with(r#"{"bench":"x","n":3,"rate":1.23,"#));
}
