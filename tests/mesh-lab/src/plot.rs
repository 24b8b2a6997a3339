//! Plots for benchmark results people would rather see than read.

use std::{ops::Range, path::Path};

use anyhow::{Result, anyhow};
use plotters::{
    coord::{Shift, types::RangedCoordf64},
    prelude::*,
};

type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn drawing_error(path: &Path) -> impl Fn(DrawingAreaErrorKind<std::io::Error>) -> anyhow::Error {
    move |e| anyhow!("drawing {}: {e:?}", path.display())
}

/// A white 900×560 SVG canvas at `path`.
fn canvas(path: &Path) -> Result<Area<'_>> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing_error(path))?;
    Ok(root)
}

/// A titled chart over `x` × `y` on `root`, both plots' look.
fn chart<'a, 'b>(
    root: &'a Area<'b>,
    path: &Path,
    title: &str,
    x: Range<f64>,
    y: Range<f64>,
) -> Result<Chart<'a, 'b>> {
    ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(drawing_error(path))
}

/// Draws the series legend at `position` and writes the file.
fn finish<'a, 'b>(
    root: &'a Area<'b>,
    mut chart: Chart<'a, 'b>,
    path: &Path,
    position: SeriesLabelPosition,
) -> Result<()> {
    let e = drawing_error(path);
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .position(position)
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// One series of points: (offered, delivered) packets per second for
/// [`offered_vs_delivered`], (round, packets per second) for [`per_round`].
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// Delivered against offered rate, one colour per series, with the lossless diagonal.
pub fn offered_vs_delivered(path: &Path, title: &str, series: &[Series<'_>]) -> Result<()> {
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|&(o, d)| [o, d]))
        .fold(1.0f64, f64::max)
        / 1e6
        * 1.1;
    let e = drawing_error(path);
    let root = canvas(path)?;
    let mut chart = chart(&root, path, title, 0.0..max, 0.0..max)?;
    chart
        .configure_mesh()
        .x_desc("offered (Mpps)")
        .y_desc("delivered (Mpps)")
        .draw()
        .map_err(&e)?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (max, max)], BLACK.mix(0.3)))
        .map_err(&e)?
        .label("no loss")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.3)));
    for (i, s) in series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let points = s.points.iter().map(|&(o, d)| (o / 1e6, d / 1e6));
        chart
            .draw_series(points.map(|p| Circle::new(p, 4, colour.filled())))
            .map_err(&e)?
            .label(s.name)
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
    }
    finish(&root, chart, path, SeriesLabelPosition::UpperLeft)
}

/// One value per round (x: round number, y: packets per second), one colour per series:
/// how two settings measured in alternating rounds compare, and how steady each is.
pub fn per_round(path: &Path, title: &str, series: &[Series<'_>]) -> Result<()> {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let rounds = points().map(|&(r, _)| r).fold(1.0f64, f64::max) + 0.5;
    let max = points().map(|&(_, v)| v).fold(1.0f64, f64::max) / 1e6 * 1.15;
    let e = drawing_error(path);
    let root = canvas(path)?;
    let mut chart = chart(&root, path, title, 0.5..rounds, 0.0..max)?;
    chart
        .configure_mesh()
        .x_desc("round")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("delivered (Mpps)")
        .draw()
        .map_err(&e)?;
    for (i, s) in series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let points: Vec<_> = s.points.iter().map(|&(r, v)| (r, v / 1e6)).collect();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(&e)?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(&e)?;
    }
    finish(&root, chart, path, SeriesLabelPosition::LowerRight)
}

/// Delivered rate over time, with the moment of a fault marked by a vertical line.
pub fn rate_over_time(path: &Path, title: &str, points: &[(f64, f64)], fault_s: f64) -> Result<()> {
    let root = canvas(path)?;
    let x_max = points.iter().map(|p| p.0).fold(fault_s, f64::max).max(0.1) * 1.02;
    let y_max = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let mut c = chart(&root, path, title, 0.0..x_max, 0.0..y_max)?;
    let e = drawing_error(path);
    c.configure_mesh()
        .x_desc("time (s)")
        .y_desc("delivered (packets/s)")
        .draw()
        .map_err(&e)?;
    c.draw_series(LineSeries::new(
        points.iter().copied(),
        BLUE.stroke_width(2),
    ))
    .map_err(&e)?
    .label("delivered at hd")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    c.draw_series(LineSeries::new(
        [(fault_s, 0.0), (fault_s, y_max)],
        RED.stroke_width(2),
    ))
    .map_err(&e)?
    .label("silent failure injected")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    finish(&root, c, path, SeriesLabelPosition::LowerRight)
}

/// Lines over time: each series' points are (minutes, value), on the axis `y_desc`.
pub fn over_time(path: &Path, title: &str, y_desc: &str, series: &[Series<'_>]) -> Result<()> {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let x_max = points().map(|p| p.0).fold(0.1f64, f64::max) * 1.02;
    let y_max = points().map(|p| p.1).fold(1.0f64, f64::max) * 1.15;
    let e = drawing_error(path);
    let root = canvas(path)?;
    let mut c = chart(&root, path, title, 0.0..x_max, 0.0..y_max)?;
    c.configure_mesh()
        .x_desc("time (min)")
        .y_desc(y_desc)
        .draw()
        .map_err(&e)?;
    for (i, s) in series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(
            s.points.iter().copied(),
            colour.stroke_width(2),
        ))
        .map_err(&e)?
        .label(s.name)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
    }
    finish(&root, c, path, SeriesLabelPosition::LowerRight)
}

/// One dashboard panel for [`panels`]: its title, y axis and series over time (seconds).
pub struct Panel<'a> {
    pub title: &'a str,
    pub y_desc: &'a str,
    pub series: Vec<Series<'a>>,
}

/// Dashboard panels stacked in one SVG (900 wide, 300 high each), sharing the time
/// axis, with a red line at `mark_s` (a fault) on each.
pub fn panels(path: &Path, panels: &[Panel<'_>], mark_s: Option<f64>) -> Result<()> {
    let height = 300 * u32::try_from(panels.len().max(1))?;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    let e = drawing_error(path);
    root.fill(&WHITE).map_err(&e)?;
    let x_max = panels
        .iter()
        .flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0)))
        .fold(1.0f64, f64::max);
    for (area, panel) in root
        .split_evenly((panels.len().max(1), 1))
        .iter()
        .zip(panels)
    {
        let points = || panel.series.iter().flat_map(|s| s.points.iter());
        let y_max = points()
            .map(|p| p.1)
            .filter(|y| y.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.15;
        let mut c = chart(area, path, panel.title, 0.0..x_max, 0.0..y_max)?;
        c.configure_mesh()
            .x_desc("time (s)")
            .y_desc(panel.y_desc)
            .draw()
            .map_err(&e)?;
        for (i, s) in panel.series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            c.draw_series(LineSeries::new(
                s.points.iter().copied().filter(|p| p.1.is_finite()),
                colour.stroke_width(2),
            ))
            .map_err(&e)?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
        }
        if let Some(m) = mark_s {
            c.draw_series(LineSeries::new([(m, 0.0), (m, y_max)], RED.stroke_width(1)))
                .map_err(&e)?;
        }
        c.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(&e)?;
    }
    root.present().map_err(&e)?;
    Ok(())
}

/// Restore times as cumulative distributions, one step line per series: x the time in ms
/// on a log scale (babeld's defaults take seconds, fast reroute milliseconds), y the share
/// of failures restored by then. Each series' points are (restore ms, ignored); a failure
/// never restored keeps its line below 1.
pub fn restore_cdf(path: &Path, title: &str, series: &[Series<'_>]) -> Result<()> {
    let usable = |s: &Series<'_>| -> Vec<f64> {
        let mut v: Vec<f64> = s
            .points
            .iter()
            .map(|p| p.0)
            .filter(|x| x.is_finite())
            .map(|x| x.max(0.1).log10())
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let all: Vec<f64> = series.iter().flat_map(usable).collect();
    let lo = all
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(0.0)
        .floor();
    let hi = all.iter().copied().fold(1.0, f64::max).ceil().max(lo + 1.0);
    let e = drawing_error(path);
    let root = canvas(path)?;
    let mut chart = chart(&root, path, title, lo..hi, 0.0..1.05)?;
    chart
        .configure_mesh()
        .x_desc("restore time (ms, log scale)")
        .x_label_formatter(&|x| format!("{}", 10f64.powf(*x)))
        .y_desc("share of failures restored")
        .draw()
        .map_err(&e)?;
    for (i, s) in series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let n = s.points.len().max(1) as f64;
        let mut steps = vec![(lo, 0.0)];
        for (k, x) in usable(s).into_iter().enumerate() {
            steps.push((x, k as f64 / n));
            steps.push((x, (k + 1) as f64 / n));
        }
        if let Some(&(_, last)) = steps.last() {
            steps.push((hi, last));
        }
        chart
            .draw_series(LineSeries::new(steps, colour.stroke_width(2)))
            .map_err(&e)?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
    }
    finish(&root, chart, path, SeriesLabelPosition::LowerRight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_plots_render_their_series() {
        let dir = std::env::temp_dir().join(format!("x0-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let series = [
            Series {
                name: "series-one",
                points: vec![(1.0, 1.0e6), (2.0, 0.9e6)],
            },
            Series {
                name: "series-two",
                points: vec![(1.0, 0.5e6), (2.0, 0.6e6)],
            },
        ];
        for (file, draw) in [
            (
                "a.svg",
                offered_vs_delivered as fn(&Path, &str, &[Series<'_>]) -> Result<()>,
            ),
            ("b.svg", per_round),
        ] {
            let path = dir.join(file);
            draw(&path, "plot-title", &series).expect("plot");
            let svg = std::fs::read_to_string(&path).expect("svg written");
            for want in ["plot-title", "series-one", "series-two"] {
                assert!(svg.contains(want), "{file} lacks {want}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
