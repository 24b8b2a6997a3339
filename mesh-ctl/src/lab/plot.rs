//! Plots for benchmark results people would rather see than read.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

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
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..max, 0f64..max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("offered (Mpps)")
        .y_desc("delivered (Mpps)")
        .draw()
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (max, max)], BLACK.mix(0.3)))
        .map_err(e)?
        .label("no loss")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.3)));
    for (i, s) in series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let points = s.points.iter().map(|&(o, d)| (o / 1e6, d / 1e6));
        chart
            .draw_series(points.map(|p| Circle::new(p, 4, colour.filled())))
            .map_err(e)?
            .label(s.name)
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// One value per round (x: round number, y: packets per second), one colour per series:
/// how two settings measured in alternating rounds compare, and how steady each is.
pub fn per_round(path: &Path, title: &str, series: &[Series<'_>]) -> Result<()> {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let rounds = points().map(|&(r, _)| r).fold(1.0f64, f64::max) + 0.5;
    let max = points().map(|&(_, v)| v).fold(1.0f64, f64::max) / 1e6 * 1.15;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.5f64..rounds, 0f64..max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("round")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("delivered (Mpps)")
        .draw()
        .map_err(e)?;
    for (i, s) in series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let points: Vec<_> = s.points.iter().map(|&(r, v)| (r, v / 1e6)).collect();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(e)?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}
