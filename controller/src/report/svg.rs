//! Time charts as inline SVG for the HTML report, drawn here from the journal's series (no charting library):
//! lines over the run's time axis with gaps where a step had no data, fault windows shaded, an objective line,
//! and breach and recovery markers. Colours come from CSS classes the report's stylesheet defines (light and
//! dark), so a chart follows the page's colour scheme and prints.
//!
//! Geometry is fixed ([`WIDTH`] × [`HEIGHT`], plot area [`PLOT_LEFT`]..[`PLOT_RIGHT`] ×
//! [`PLOT_TOP`]..[`PLOT_BOTTOM`]) and scaled by the viewBox, so positions in the SVG are checkable against the
//! journal's times: `x = PLOT_LEFT + at_ms / duration_ms × (PLOT_RIGHT − PLOT_LEFT)` ([`TimeScale`]).

use std::fmt::Write;

use super::series::FaultWindow;

/// The SVG's width and height (its viewBox), and the plot area inside.
pub const WIDTH: f64 = 960.0;
pub const HEIGHT: f64 = 250.0;
pub const PLOT_LEFT: f64 = 64.0;
pub const PLOT_RIGHT: f64 = 944.0;
pub const PLOT_TOP: f64 = 14.0;
pub const PLOT_BOTTOM: f64 = 212.0;

/// Text safe inside HTML and SVG, in element content and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The run's time (milliseconds since it started) to x in the plot area: 0 at [`PLOT_LEFT`], the run's
/// duration at [`PLOT_RIGHT`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeScale {
    pub duration_ms: u64,
}

impl TimeScale {
    pub fn x(&self, at_ms: u64) -> f64 {
        let span = self.duration_ms.max(1) as f64;
        PLOT_LEFT + (at_ms.min(self.duration_ms) as f64 / span) * (PLOT_RIGHT - PLOT_LEFT)
    }
}

/// A value to y in the plot area: `min` at [`PLOT_BOTTOM`], `max` at [`PLOT_TOP`].
#[derive(Clone, Copy, Debug, PartialEq)]
struct ValueScale {
    min: f64,
    max: f64,
    /// Between grid lines.
    step: f64,
}

impl ValueScale {
    fn y(&self, v: f64) -> f64 {
        let span = if self.max > self.min { self.max - self.min } else { 1.0 };
        let v = v.clamp(self.min, self.max);
        PLOT_BOTTOM - (v - self.min) / span * (PLOT_BOTTOM - PLOT_TOP)
    }
}

/// One line of a chart: a value per step of the run (`None`: no data, the line breaks), drawn as steps: each
/// value holds flat from its time to the next step's, so a second's value never leans into the one before.
#[derive(Clone, Debug)]
pub struct Line {
    pub label: String,
    /// The CSS class giving its colour: `s1` … `s5`.
    pub class: &'static str,
    /// (start of the step in ms since the run started, value).
    pub points: Vec<(u64, Option<f64>)>,
    /// The length of a step.
    pub step_ms: u64,
}

/// How a chart's values read: as a percentage of 1 (`99.5%`), milliseconds, or a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Fraction,
    Millis,
    PerSecond,
}

impl Unit {
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Fraction => crate::slo::format::percent(v, if v > 0.9 && v < 1.0 { 2 } else { 1 }),
            Unit::Millis => format!("{} ms", super::markdown::trim(v, 1)),
            Unit::PerSecond => format!("{}/s", super::markdown::trim(v, 1)),
        }
    }
}

/// A time chart.
#[derive(Clone, Debug)]
pub struct Chart<'a> {
    /// Unique in the document (used for the title and description ids).
    pub id: String,
    pub title: String,
    /// The text alternative: what the chart shows, in words.
    pub desc: String,
    pub unit: Unit,
    pub scale: TimeScale,
    pub lines: Vec<Line>,
    /// A horizontal objective line, with its label.
    pub objective: Option<(f64, String)>,
    pub faults: &'a [FaultWindow],
    /// Where the SLO broke.
    pub breach_ms: Option<u64>,
    /// Where the SLO held again, with the annotation (`recovered in 1.2 s`).
    pub recovered: Option<(u64, String)>,
}

impl Chart<'_> {
    /// The chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let mut svg =
            String::with_capacity(4096 + self.lines.iter().map(|l| l.points.len() * 16).sum::<usize>());
        let id = escape(&self.id);
        let _ = write!(
            svg,
            r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}-t {id}-d" xmlns="http://www.w3.org/2000/svg"><title id="{id}-t">{}</title><desc id="{id}-d">{}</desc>"#,
            escape(&self.title),
            escape(&self.desc),
        );
        let values = self.value_scale();
        self.axes(&mut svg, values);
        for f in self.faults {
            let (x0, x1) = (self.scale.x(f.start_ms), self.scale.x(f.end_ms));
            // An instant fault (a kill) is a thin band at its moment.
            let width = (x1 - x0).max(2.0);
            let _ = write!(
                svg,
                r#"<rect class="fault" data-fault="{}" data-start-ms="{}" data-end-ms="{}" x="{x0:.1}" y="{PLOT_TOP}" width="{width:.1}" height="{:.1}"><title>{}: {} ({} – {})</title></rect>"#,
                escape(&f.name),
                f.start_ms,
                f.end_ms,
                PLOT_BOTTOM - PLOT_TOP,
                escape(&f.name),
                escape(&f.detail),
                super::markdown::seconds(f.start_ms),
                super::markdown::seconds(f.end_ms),
            );
        }
        if let Some((objective, label)) = &self.objective {
            let y = values.y(*objective);
            // The label above the line, or below it when the line runs along the top.
            let label_y = if y - 4.0 < PLOT_TOP + 12.0 { y + 14.0 } else { y - 4.0 };
            let _ = write!(
                svg,
                r#"<g class="objective"><line x1="{PLOT_LEFT}" x2="{PLOT_RIGHT}" y1="{y:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text></g>"#,
                PLOT_RIGHT - 4.0,
                label_y,
                escape(label),
            );
        }
        for line in &self.lines {
            let mut d = String::with_capacity(line.points.len() * 14);
            // The y the pen is at (None: lifted), and where the flat stretch drawn at it ends so far: steps at
            // the same y are one horizontal segment.
            let mut pen: Option<String> = None;
            let mut flat_to: Option<f64> = None;
            let flush = |d: &mut String, flat_to: &mut Option<f64>| {
                if let Some(x) = flat_to.take() {
                    let _ = write!(d, " H{x:.1}");
                }
            };
            for (at, v) in &line.points {
                match v {
                    Some(v) if v.is_finite() => {
                        let (x0, x1) = (self.scale.x(*at), self.scale.x(at.saturating_add(line.step_ms)));
                        let y = format!("{:.1}", values.y(*v));
                        if pen.as_ref() != Some(&y) {
                            flush(&mut d, &mut flat_to);
                            let _ = write!(d, "{}{x0:.1} {y}", if pen.is_some() { " L" } else { " M" });
                            pen = Some(y);
                        }
                        flat_to = Some(x1);
                    }
                    _ => {
                        flush(&mut d, &mut flat_to);
                        pen = None;
                    }
                }
            }
            flush(&mut d, &mut flat_to);
            if !d.is_empty() {
                let _ = write!(
                    svg,
                    r#"<path class="line {}" data-label="{}" d="{}"/>"#,
                    line.class,
                    escape(&line.label),
                    d.trim_start()
                );
            }
        }
        if let Some(at) = self.breach_ms {
            let x = self.scale.x(at);
            let _ = write!(
                svg,
                r#"<g class="breach" data-at-ms="{at}"><line x1="{x:.1}" x2="{x:.1}" y1="{PLOT_TOP}" y2="{PLOT_BOTTOM}"/><path d="M{:.1} {PLOT_TOP} l6 10 h-12 z"/><text x="{:.1}" y="{:.1}">breached at {}</text></g>"#,
                x,
                x + 8.0,
                PLOT_TOP + 22.0,
                super::markdown::seconds(at),
            );
        }
        if let Some((at, label)) = &self.recovered {
            let x = self.scale.x(*at);
            let _ = write!(
                svg,
                r#"<g class="recovered" data-at-ms="{at}"><line x1="{x:.1}" x2="{x:.1}" y1="{PLOT_TOP}" y2="{PLOT_BOTTOM}"/><circle cx="{x:.1}" cy="{:.1}" r="4"/><text x="{:.1}" y="{:.1}">{}</text></g>"#,
                PLOT_BOTTOM - 8.0,
                x + 6.0,
                PLOT_BOTTOM - 12.0,
                escape(label),
            );
        }
        svg.push_str("</svg>");
        svg
    }

    /// From 0 (or below, for an SLI under its objective) to the largest value, with some headroom; fractions
    /// near 1 zoom onto the objective so a dip from 100% to 98% shows.
    fn value_scale(&self) -> ValueScale {
        let values =
            self.lines.iter().flat_map(|l| l.points.iter().filter_map(|(_, v)| *v)).filter(|v| v.is_finite());
        let objective = self.objective.as_ref().map(|(o, _)| *o);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.chain(objective) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return ValueScale { min: 0.0, max: 1.0, step: 0.25 };
        }
        if self.unit == Unit::Fraction && objective.is_some() && lo > 0.5 {
            // Zoomed onto the band from a bit below the lowest value (or the objective) to 100%, in round
            // steps, so a dip from 100% to 98% shows.
            let top = hi.max(1.0);
            let step = nice_ceiling(((top - lo) / 4.0).max(0.0025));
            let bottom = ((lo - step * 0.5) / step).floor() * step;
            return ValueScale { min: bottom.max(0.0), max: (top / step).ceil() * step, step };
        }
        if hi <= 0.0 && lo >= 0.0 {
            return ValueScale { min: 0.0, max: 1.0, step: 0.25 };
        }
        let step = nice_ceiling((hi.max(0.0) * 1.05 - lo.min(0.0)) / 4.0);
        let mut top = ((hi.max(0.0) * 1.05) / step).ceil() * step;
        if self.unit == Unit::Fraction && hi <= 1.0 {
            // A share never exceeds 100%.
            top = top.min(1.0);
        }
        ValueScale { min: if lo < 0.0 { (lo / step).floor() * step } else { 0.0 }, max: top.max(step), step }
    }

    fn axes(&self, svg: &mut String, values: ValueScale) {
        svg.push_str(r#"<g class="axes">"#);
        let _ = write!(
            svg,
            r#"<rect class="plot" x="{PLOT_LEFT}" y="{PLOT_TOP}" width="{:.1}" height="{:.1}"/>"#,
            PLOT_RIGHT - PLOT_LEFT,
            PLOT_BOTTOM - PLOT_TOP
        );
        let lines = ((values.max - values.min) / values.step).round().clamp(1.0, 10.0) as u32;
        for i in 0..=lines {
            let v = values.min + values.step * f64::from(i);
            let y = values.y(v);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{PLOT_LEFT}" x2="{PLOT_RIGHT}" y1="{y:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                PLOT_LEFT - 6.0,
                y + 4.0,
                escape(&self.unit.format(v)),
            );
        }
        let seconds = self.scale.duration_ms as f64 / 1000.0;
        let tick = nice_ceiling((seconds / 8.0).max(1.0));
        let mut t = 0.0;
        while t <= seconds + 1e-9 {
            let x = self.scale.x((t * 1000.0) as u64);
            let _ = write!(
                svg,
                r#"<line class="tick" x1="{x:.1}" x2="{x:.1}" y1="{PLOT_BOTTOM}" y2="{:.1}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{} s</text>"#,
                PLOT_BOTTOM + 5.0,
                PLOT_BOTTOM + 18.0,
                super::markdown::trim(t, 1),
            );
            t += tick;
        }
        let _ = write!(
            svg,
            r#"<text class="axis-label" x="{:.1}" y="{:.1}" text-anchor="middle">time since the run started</text></g>"#,
            (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            HEIGHT - 4.0
        );
    }
}

/// The smallest 1, 2, 2.5 or 5 × 10ⁿ at or above `x` (> 0).
fn nice_ceiling(x: f64) -> f64 {
    if !x.is_finite() || x <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= x - 1e-12)
        .unwrap_or(10.0 * magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.8), 1.0);
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(2.2), 2.5);
        assert_eq!(nice_ceiling(37.0), 50.0);
        assert_eq!(nice_ceiling(450.0), 500.0);
    }

    #[test]
    fn the_time_scale_spans_the_plot() {
        let scale = TimeScale { duration_ms: 10_000 };
        assert_eq!(scale.x(0), PLOT_LEFT);
        assert_eq!(scale.x(10_000), PLOT_RIGHT);
        assert_eq!(scale.x(5_000), (PLOT_LEFT + PLOT_RIGHT) / 2.0);
        assert_eq!(scale.x(99_000), PLOT_RIGHT, "clamped to the run");
    }
}
