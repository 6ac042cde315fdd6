//! The soak's chart: one SVG, three panels over the windows — each replica's resident memory,
//! open connections (database; HTTP per replica), and p99 of polls, flows and ping flows.

use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;

struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

fn series(lines: &[Value], name: &str, pick: impl Fn(&Value) -> Option<f64>) -> Series {
    Series {
        name: name.to_owned(),
        points: lines
            .iter()
            .filter_map(|l| Some((l["window"].as_f64()?, pick(l)?)))
            .collect(),
    }
}

fn per_replica(lines: &[Value], field: &str, label: &str) -> Vec<Series> {
    let replicas = lines
        .first()
        .and_then(|l| l[field].as_array())
        .map_or(0, Vec::len);
    (0..replicas)
        .map(|i| {
            series(lines, &format!("{label} api-{}", i + 1), |l| {
                l[field][i].as_f64()
            })
        })
        .collect()
}

pub fn draw(path: &Path, lines: &[Value]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = SVGBackend::new(path, (960, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let panels = root.split_evenly((3, 1));
    let mut connections = vec![series(lines, "database", |l| l["db_connections"].as_f64())];
    connections.extend(per_replica(lines, "http_connections_open", "http"));
    let p99 = |kind: &'static str| move |l: &Value| l[kind]["p99_ms"].as_f64();
    let charts = [
        (
            "resident memory (MiB)",
            per_replica(lines, "rss_mib", "RSS"),
        ),
        ("open connections", connections),
        (
            "p99 (ms)",
            vec![
                series(lines, "polls", p99("polls")),
                series(lines, "flows", p99("flows")),
                series(lines, "ping flows", p99("pings")),
            ],
        ),
    ];
    let windows = lines.len().max(1) as f64;
    for (area, (title, all)) in panels.iter().zip(charts) {
        let top = all
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(1.0_f64, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(1.0..windows.max(2.0), 0.0..top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("minute")
            .draw()
            .map_err(|e| err(&e))?;
        for (i, s) in all.into_iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(s.points, color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(s.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}
