//! `bench --plot FILE.svg|FILE.png`: every endpoint's latency by percentile on one chart, the
//! way HDR histograms are usually drawn. The x axis counts "nines" (50%, 90%, 99%, 99.9%, ...)
//! so the tail gets as much room as the median; the y axis is logarithmic so a 50 µs cache hit
//! and a 5 ms DynamoDB read both read clearly.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::bench::{BenchError, Report};

const SIZE: (u32, u32) = (1024, 576);
/// The tail shown stops here (99.999%) however many requests ran.
const MAX_NINES: f64 = 5.0;
const FONT: &str = "sans-serif";

/// Whether `path` names a format [`write`] can draw (.svg or .png).
pub fn supported(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("svg") || e.eq_ignore_ascii_case("png"))
}

/// Draws `report`'s percentile curves into `path`, as SVG or PNG by its extension.
pub fn write(report: &Report, path: &Path) -> Result<(), BenchError> {
    let failed = |cause: String| BenchError::Output {
        path: path.to_path_buf(),
        cause,
    };
    register_font().map_err(failed)?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("svg") => draw(SVGBackend::new(path, SIZE).into_drawing_area(), report),
        Some("png") => draw(BitMapBackend::new(path, SIZE).into_drawing_area(), report),
        _ => Err("the plot file must end in .svg or .png".into()),
    }
    .map_err(failed)
}

/// Text is laid out with a font compiled into the binary, so plots look the same on machines
/// without fonts (containers).
fn register_font() -> Result<(), String> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| "the built-in font could not be loaded".to_string());
    });
    result
}

/// Position on the x axis of percentile `p` (0 to 100): how many nines it has.
fn nines(p: f64) -> f64 {
    if p >= 100.0 {
        MAX_NINES
    } else {
        (-(1.0 - p / 100.0).log10()).min(MAX_NINES)
    }
}

fn percent_label(x: &f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{p:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

fn latency_label(us: &f64) -> String {
    if *us >= 1000.0 {
        format!("{} ms", trim(us / 1000.0))
    } else {
        format!("{} µs", trim(*us))
    }
}

fn trim(v: f64) -> String {
    let text = format!("{v:.1}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, report: &Report) -> Result<(), String> {
    let text = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let curves: Vec<(&str, Vec<(f64, f64)>)> = report
        .endpoints
        .iter()
        .map(|e| {
            let points = e
                .percentile_curve
                .iter()
                .map(|&(p, us)| (nines(p), us.max(1) as f64))
                .collect();
            (e.endpoint.as_str(), points)
        })
        .filter(|(_, points): &(&str, Vec<(f64, f64)>)| !points.is_empty())
        .collect();
    if curves.is_empty() {
        return Err("no successful request to plot".into());
    }
    let all = curves.iter().flat_map(|(_, points)| points.iter());
    let (lowest, highest) = all.fold((f64::MAX, 1.0f64), |(lo, hi), &(_, y)| {
        (lo.min(y), hi.max(y))
    });
    let x_max = curves
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max)
        .ceil();

    root.fill(&WHITE).map_err(text)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{} latency by percentile ({} clients)",
                report.mix, report.concurrency
            ),
            (FONT, 20),
        )
        .margin(16)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, ((lowest / 1.5)..(highest * 1.5)).log_scale())
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&percent_label)
        .y_label_formatter(&latency_label)
        .x_desc("percentile")
        .y_desc("latency")
        .label_style((FONT, 14))
        .draw()
        .map_err(text)?;
    for (i, (name, points)) in curves.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(text)?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(text)?;
    root.present().map_err(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_read_as_percentiles_and_latencies() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert_eq!(nines(100.0), MAX_NINES);
        assert_eq!(percent_label(&1.0), "90%");
        assert_eq!(percent_label(&3.0), "99.9%");
        assert_eq!(latency_label(&50.0), "50 µs");
        assert_eq!(latency_label(&2500.0), "2.5 ms");
    }
}
