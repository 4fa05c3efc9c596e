//! A small SVG line chart (no dependency): series of points, a log or
//! linear x axis, a linear y axis from 0.

use std::fmt::Write;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Short SI form of an axis value: 20k, 1M.
pub fn si(v: f64) -> String {
    let (x, suffix) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = format!("{x:.1}");
    format!("{}{suffix}", s.trim_end_matches('0').trim_end_matches('.'))
}

/// The chart as an SVG document. Points with a non-finite or non-positive
/// (log axis) x are left out.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    log_x: bool,
    series: &[Series],
) -> String {
    let tx = |x: f64| if log_x { x.log10() } else { x };
    let pts = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_x || *x > 0.0))
    };
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut y1: f64 = 0.0;
    for &(x, y) in pts() {
        x0 = x0.min(tx(x));
        x1 = x1.max(tx(x));
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    // A round top for the y axis.
    let y_top = if y1 <= 0.0 {
        1.0
    } else {
        let step = 10f64.powf(y1.log10().floor());
        ((y1 / step).ceil() * step).max(step)
    };
    let px = |x: f64| LEFT + (tx(x) - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / y_top * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        (W - RIGHT + LEFT) / 2.0,
        escape(title)
    );
    // Axes, ticks and grid.
    let (bx, by) = (H - BOTTOM, W - RIGHT);
    let _ = writeln!(
        s,
        r#"<path d="M{LEFT},{TOP} V{bx} H{by}" stroke="black" fill="none"/>"#
    );
    for i in 0..=5 {
        let y = y_top * f64::from(i) / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{by}" y1="{0:.1}" y2="{0:.1}" stroke="#ddd"/><text x="{1}" y="{2:.1}" text-anchor="end">{3}</text>"##,
            py(y),
            LEFT - 6.0,
            py(y) + 4.0,
            si(y)
        );
    }
    let ticks: Vec<f64> = if log_x {
        // Every decade and 2, 5 times it, within the range.
        let mut t = Vec::new();
        let mut d = 10f64.powf(x0.floor());
        for _ in 0..20 {
            for m in [1.0, 2.0, 5.0] {
                let v = d * m;
                if v.log10() >= x0 - 1e-9 && v.log10() <= x1 + 1e-9 {
                    t.push(v);
                }
            }
            d *= 10.0;
            if d.log10() > x1 {
                break;
            }
        }
        t
    } else {
        (0..=5)
            .map(|i| x0 + (x1 - x0) * f64::from(i) / 5.0)
            .collect()
    };
    for t in ticks {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            px(t),
            bx + 18.0,
            si(t)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (W - RIGHT + LEFT) / 2.0,
        H - 15.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{0}" text-anchor="middle" transform="rotate(-90 18 {0})">{1}</text>"#,
        (H - BOTTOM + TOP) / 2.0,
        escape(y_label)
    );
    for (n, ser) in series.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let p: Vec<String> = ser
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_x || *x > 0.0))
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        if !p.is_empty() {
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                p.join(" ")
            );
            for xy in &p {
                let (x, y) = xy.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
            }
        }
        let ly = TOP + 10.0 + 20.0 * n as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{0}" x2="{1}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{2}" y="{3}">{4}</text>"#,
            W - RIGHT + 15.0,
            W - RIGHT + 40.0,
            W - RIGHT + 46.0,
            ly + 4.0,
            escape(&ser.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_its_lines_ticks_and_legend() {
        let svg = line_chart(
            "t <1>",
            "x",
            "y",
            true,
            &[
                Series {
                    name: "a".into(),
                    points: vec![(1e4, 1.0), (1e6, 3.0), (0.0, 9.0)],
                },
                Series {
                    name: "b".into(),
                    points: vec![(2e4, 2.0)],
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        // The x = 0 point is off a log axis; three points drawn.
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains(">10k<") && svg.contains(">1M<"), "{svg}");
        assert!(svg.contains("t &lt;1&gt;"));
        assert_eq!(si(1_500_000.0), "1.5M");
        assert_eq!(si(20_000.0), "20k");
    }
}
