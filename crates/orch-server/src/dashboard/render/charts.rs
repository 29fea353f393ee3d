//! Usage as SVG bar charts: one horizontal bar per label (a day, an agent, a project), stacked
//! by series (input and output tokens), the value written at the end of each bar.

use std::fmt::Write as _;

use super::{class_token, push_escaped, shorten};

/// One bar: a label and one value per series.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// What the bar is (untrusted text: an agent or project name).
    pub label: String,
    /// One value per series, in the chart's series order.
    pub values: Vec<f64>,
}

/// A chart: its series names (each one also a CSS class `series-<name>`) and bars.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The title (also the SVG's accessible label).
    pub title: String,
    /// Series names, in stacking order.
    pub series: Vec<String>,
    /// Bars, top to bottom.
    pub bars: Vec<Bar>,
    /// How a bar's total is written.
    pub unit: Unit,
}

/// How values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count (`12.3k`, `4.5M`).
    Tokens,
    /// US dollars (`$1.23`).
    Dollars,
}

impl Unit {
    /// `value` as this unit.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Dollars if value < 0.01 && value > 0.0 => format!("${value:.4}"),
            Unit::Dollars => format!("${value:.2}"),
            Unit::Tokens if value >= 1e6 => format!("{:.1}M", value / 1e6),
            Unit::Tokens if value >= 1e3 => format!("{:.1}k", value / 1e3),
            Unit::Tokens => format!("{value:.0}"),
        }
    }
}

const LABEL_WIDTH: f64 = 150.0;
const BAR_AREA: f64 = 380.0;
const VALUE_WIDTH: f64 = 80.0;
const ROW: f64 = 22.0;
const TOP: f64 = 28.0;
/// Most bars drawn; a chart of more (a year of days) shows the last ones.
pub const MAX_BARS: usize = 60;

/// The chart as an `<svg>` element; a chart without bars says "no usage yet".
pub fn render(chart: &Chart) -> String {
    let skip = chart.bars.len().saturating_sub(MAX_BARS);
    let bars = &chart.bars[skip..];
    let total = |bar: &Bar| {
        bar.values
            .iter()
            .filter(|v| v.is_finite() && **v > 0.0)
            .fold(0.0, |sum, v| sum + v)
    };
    let largest = bars.iter().map(total).fold(0.0, f64::max);
    let width = LABEL_WIDTH + BAR_AREA + VALUE_WIDTH;
    let height = TOP + ROW * bars.len().max(1) as f64 + 24.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\""
    );
    push_escaped(&mut svg, &chart.title);
    svg.push_str("\"><text class=\"chart-title\" x=\"0\" y=\"16\">");
    push_escaped(&mut svg, &chart.title);
    svg.push_str("</text>\n");
    if bars.is_empty() {
        let _ = writeln!(
            svg,
            "<text class=\"chart-empty\" x=\"{LABEL_WIDTH}\" y=\"{}\">no usage yet</text>",
            TOP + 14.0
        );
    }
    for (row, bar) in bars.iter().enumerate() {
        let y = TOP + row as f64 * ROW;
        let _ = write!(
            svg,
            "<g class=\"chart-row\"><text class=\"chart-label\" x=\"{}\" y=\"{}\" \
             text-anchor=\"end\">",
            LABEL_WIDTH - 8.0,
            y + 14.0
        );
        push_escaped(&mut svg, &shorten(&bar.label, 22));
        svg.push_str("</text>");
        let mut x = LABEL_WIDTH;
        for (series, value) in chart.series.iter().zip(&bar.values) {
            if !value.is_finite() || *value <= 0.0 || largest <= 0.0 {
                continue;
            }
            let length = value / largest * BAR_AREA;
            let _ = write!(
                svg,
                "<rect class=\"series-{}\" x=\"{x:.1}\" y=\"{}\" width=\"{length:.1}\" \
                 height=\"{}\"><title>",
                class_token(series),
                y + 2.0,
                ROW - 6.0
            );
            push_escaped(&mut svg, &bar.label);
            svg.push_str(": ");
            push_escaped(&mut svg, series);
            let _ = write!(svg, " {}</title></rect>", chart.unit.format(*value));
            x += length;
        }
        let _ = writeln!(
            svg,
            "<text class=\"chart-value\" x=\"{:.1}\" y=\"{}\">{}</text></g>",
            x + 6.0,
            y + 14.0,
            chart.unit.format(total(bar))
        );
    }
    // The legend, under the bars.
    let mut x = LABEL_WIDTH;
    let y = TOP + ROW * bars.len().max(1) as f64 + 8.0;
    if chart.series.len() > 1 {
        for series in &chart.series {
            let _ = write!(
                svg,
                "<rect class=\"series-{}\" x=\"{x}\" y=\"{y}\" width=\"10\" height=\"10\"/>\
                 <text class=\"chart-legend\" x=\"{}\" y=\"{}\">",
                class_token(series),
                x + 14.0,
                y + 9.0
            );
            push_escaped(&mut svg, series);
            svg.push_str("</text>");
            x += 110.0;
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(bars: Vec<Bar>) -> Chart {
        Chart {
            title: "Tokens per agent".to_owned(),
            series: vec!["input".to_owned(), "output".to_owned()],
            bars,
            unit: Unit::Tokens,
        }
    }

    #[test]
    fn bars_are_scaled_to_the_largest_total_and_stacked() {
        let svg = render(&chart(vec![
            Bar {
                label: "claude".to_owned(),
                values: vec![3000.0, 1000.0],
            },
            Bar {
                label: "sim".to_owned(),
                values: vec![1000.0, 1000.0],
            },
        ]));
        // claude's total is the largest: its bars fill the area (285 + 95 = 380).
        assert!(
            svg.contains("class=\"series-input\" x=\"150.0\" y=\"30\" width=\"285.0\""),
            "{svg}"
        );
        assert!(
            svg.contains("class=\"series-output\" x=\"435.0\" y=\"30\" width=\"95.0\""),
            "{svg}"
        );
        assert!(svg.contains(">4.0k</text>"), "{svg}");
        assert!(svg.contains(">2.0k</text>"), "{svg}");
        assert!(svg.contains("chart-legend"));
    }

    #[test]
    fn empty_zero_and_non_finite_values_draw_no_bars() {
        let svg = render(&chart(Vec::new()));
        assert!(svg.contains("no usage yet"));
        let svg = render(&chart(vec![Bar {
            label: "x".to_owned(),
            values: vec![0.0, f64::NAN],
        }]));
        assert!(
            !svg.contains("<rect class=\"series-input\" x=\"150.0"),
            "{svg}"
        );
        assert!(svg.contains(">0</text>"), "{svg}");
        assert!(!svg.contains("NaN"), "{svg}");
    }

    #[test]
    fn hostile_labels_render_inert_and_long_charts_are_capped() {
        let mut bars: Vec<Bar> = (0..100)
            .map(|i| Bar {
                label: format!("day {i}"),
                values: vec![1.0, 1.0],
            })
            .collect();
        bars.push(Bar {
            label: "</text><script>alert(1)</script>".to_owned(),
            values: vec![1.0, 0.0],
        });
        let mut c = chart(bars);
        c.series[0] = "in\" onload=\"alert(1)".to_owned();
        let svg = render(&c);
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("\" onload"), "{svg}");
        assert_eq!(svg.matches("<g class=\"chart-row\"").count(), MAX_BARS);
        assert!(!svg.contains(">day 0<"), "the oldest bars are dropped");
    }

    #[test]
    fn dollars_and_tokens_are_written_for_people() {
        assert_eq!(Unit::Dollars.format(1.234), "$1.23");
        assert_eq!(Unit::Dollars.format(0.0012), "$0.0012");
        assert_eq!(Unit::Tokens.format(999.0), "999");
        assert_eq!(Unit::Tokens.format(2_500_000.0), "2.5M");
    }
}
