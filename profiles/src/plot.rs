//! One SVG per profile entry: the measured latency (p90 per output token) against the rate,
//! the SLO as a dashed line, and the chosen rate as a marked point. Hand-written SVG, no
//! plotting library: a line, dots, axes with a few ticks.
//!
//! Written by `stampede profile generate --plot DIR` and at the end of `stampede profile
//! sweep --slo-ms`.

use std::fmt::Write;

use crate::profile::Entry;

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 48.0;

/// The SVG of one entry.
pub fn svg(entry: &Entry) -> String {
    let slo = f64::from(entry.request.latency_slo_tpot_ms);
    let pts: Vec<(f64, f64)> = entry
        .points
        .iter()
        .map(|p| (f64::from(p.rate), f64::from(p.tpot_ms)))
        .collect();
    let max_x = pts.iter().map(|p| p.0).fold(1.0_f64, f64::max) * 1.05;
    let max_y = pts.iter().map(|p| p.1).fold(slo, f64::max) * 1.1;
    let x = |v: f64| LEFT + v / max_x * (W - LEFT - RIGHT);
    let y = |v: f64| H - BOTTOM - v / max_y * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let title = format!(
        "{} × {} ({} → {} rps, {})",
        entry.worker.id,
        entry.request.id,
        entry.request.latency_slo_tpot_ms,
        entry.choice.max_rps,
        entry.choice.status.as_str_name()
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="14">{}</text>"#,
        escape(&title)
    );
    // Axes and ticks.
    let (x0, y0, x1, y1) = (x(0.0), y(0.0), x(max_x), y(max_y));
    let _ = writeln!(
        s,
        r#"<path d="M{x0:.1},{y1:.1} L{x0:.1},{y0:.1} L{x1:.1},{y0:.1}" fill="none" stroke="black"/>"#
    );
    for i in 0..=4 {
        let (vx, vy) = (max_x * f64::from(i) / 4.0, max_y * f64::from(i) / 4.0);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(vx),
            y0 + 16.0,
            short(vx)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            x0 - 6.0,
            y(vy) + 4.0,
            short(vy)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">request rate (requests/s)</text>"#,
        (x0 + x1) / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">p90 latency per output token (ms)</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0
    );
    // The SLO.
    let _ = writeln!(
        s,
        r##"<line x1="{x0:.1}" y1="{ys:.1}" x2="{x1:.1}" y2="{ys:.1}" stroke="#c0392b" stroke-dasharray="6,4"/><text x="{:.1}" y="{:.1}" fill="#c0392b" text-anchor="end">SLO {slo} ms</text>"##,
        x1,
        y(slo) - 6.0,
        ys = y(slo)
    );
    // The measurements.
    if !pts.is_empty() {
        let line: Vec<String> = pts
            .iter()
            .map(|&(a, b)| format!("{:.1},{:.1}", x(a), y(b)))
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#2c6fbb" stroke-width="2"/>"##,
            line.join(" ")
        );
        for &(a, b) in &pts {
            let _ = writeln!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#2c6fbb"/>"##,
                x(a),
                y(b)
            );
        }
    }
    // The chosen rate, on the SLO line (or at the highest rate's latency).
    let chosen = f64::from(entry.choice.max_rps);
    if chosen > 0.0 {
        let at = pts
            .iter()
            .rev()
            .find(|p| p.0 <= chosen)
            .map_or(slo, |p| if p.0 == chosen { p.1 } else { slo });
        let _ = writeln!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="7" fill="none" stroke="#27ae60" stroke-width="3"/><text x="{:.1}" y="{:.1}" fill="#27ae60">{} rps</text>"##,
            x(chosen),
            y(at),
            x(chosen) + 10.0,
            y(at) + 18.0,
            entry.choice.max_rps
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A file name for an entry: `worker__request.svg`, with anything odd replaced.
pub fn file_name(entry: &Entry) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "{}__{}.svg",
        clean(&entry.worker.id),
        clean(&entry.request.id)
    )
}

fn short(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Data;
    use crate::profile::generate;
    use stampede_grpc::common::{RequestType, WorkerType};
    use stampede_grpc::profiler_service::WorkloadDefinition;

    #[test]
    fn a_plot_has_the_points_the_slo_and_the_choice() {
        let w = WorkloadDefinition {
            worker_types: vec![WorkerType {
                id: "worker_mock_01".into(),
                ..Default::default()
            }],
            request_types: vec![RequestType {
                id: "request_mock_01".into(),
                latency_slo_tpot_ms: 250.0,
                ..Default::default()
            }],
        };
        let p = generate(&w, &Data::Mock).unwrap();
        let svg = svg(&p.entries[0]);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<circle").count(), 4, "3 points and the choice");
        assert!(svg.contains("SLO 250 ms") && svg.contains("23.333334 rps"));
        assert_eq!(
            file_name(&p.entries[0]),
            "worker_mock_01__request_mock_01.svg"
        );
    }
}
