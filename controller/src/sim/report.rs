//! Rendering the demo: a readable timeline with a summary, the JSON object of the replay
//! contract plus the demo summary, and a chart of online latency (SVG or HTML).

use std::fmt::Write;

use fulcrum_policies::spec::Action;
use plotters::prelude::*;
use serde_json::{Value, json};

use super::demo::{DemoRun, Happening};
use crate::render::{Style, rfc3339};
use fulcrum_engine::decision::Outcome;
use fulcrum_engine::{Decision, Event};

/// The summary object: SLO-violation seconds with and without Fulcrum, actions by kind,
/// time to mitigate.
pub fn summary(run: &DemoRun) -> Value {
    let count = |f: &dyn Fn(&fulcrum_engine::Decision) -> bool| {
        run.decisions.iter().filter(|d| f(d)).count()
    };
    let mitigated: Vec<f64> = run.time_to_mitigate_s.iter().flatten().copied().collect();
    let mean =
        (!mitigated.is_empty()).then(|| mitigated.iter().sum::<f64>() / mitigated.len() as f64);
    json!({
        "slo_violation_seconds": {
            "with_fulcrum": run.violation_with_s,
            "without": run.violation_without_s,
        },
        "actions": {
            "evicted": count(&|d| d.outcome == Outcome::Executed && d.action == Action::Evict),
            "migrated": count(&|d| d.outcome == Outcome::Executed && d.action == Action::Migrate),
            "blocked": count(&|d| d.outcome == Outcome::Blocked),
            "dry_run": count(&|d| d.outcome == Outcome::DryRun),
        },
        "time_to_mitigate_seconds": mean,
        "incidents": run.incidents.iter().zip(&run.time_to_mitigate_s).map(|(i, t)| json!({
            "antagonist": i.antagonist, "node": i.node, "resource": i.resource,
            "onset": run.worst.get(i.onset as usize).map(|w| w.0), "mitigated_after_seconds": t,
        })).collect::<Vec<_>>(),
        "scale": {
            "nodes": run.config.busy_nodes + run.config.spare_nodes + run.config.gpu_nodes + 1,
            "ticks": run.config.ticks,
            "event_seconds": run.config.ticks as i64 * run.config.period_ms / 1000,
            "samples": run.samples,
        },
        "wall_seconds": run.wall_s,
        "seed": run.config.seed,
    })
}

/// `{"decisions":[...],"summary":{...}}`.
pub fn render_json(run: &DemoRun) -> Value {
    json!({"decisions": run.decisions, "summary": summary(run)})
}

/// The timeline and the with/without summary.
pub fn render_text(run: &DemoRun, color: bool) -> String {
    let style = Style { color };
    let mut out = String::new();
    let t0 = run.worst.first().map_or(0, |w| w.0);
    write_timeline(&mut out, run, t0, &style);
    write_summary(&mut out, run, t0);
    out
}

/// Event time `at` as `+MM:SS` since `t0`.
fn clock(at: i64, t0: i64) -> String {
    let s = (at - t0) / 1000;
    format!("+{:02}:{:02}", s / 60, s % 60)
}

/// One line (or block) per happening, in event-time order.
fn write_timeline(out: &mut String, run: &DemoRun, t0: i64, style: &Style) {
    let mut timeline: Vec<&(i64, Happening)> = run.timeline.iter().collect();
    timeline.sort_by_key(|(at, _)| *at);
    for (at, happening) in timeline {
        let line = happening_line(happening, &clock(*at, t0), style);
        let _ = writeln!(out, "{line}");
    }
}

/// The timeline text of one happening, stamped `clock`.
fn happening_line(happening: &Happening, clock: &str, style: &Style) -> String {
    match happening {
        Happening::Onset(i) => format!(
            "{}  {}  {} starts saturating {} on {}",
            clock,
            style.paint("1;33", "ONSET   "),
            i.antagonist,
            i.resource,
            i.node
        ),
        Happening::Engine(event) => event_line(event, clock, style),
        Happening::Carried {
            decision,
            landed_on,
        } => format!(
            "{}  {}  {} left {}{}",
            clock,
            style.paint("1;32", "ACTED   "),
            decision.target,
            decision.node,
            landed_on
                .as_deref()
                .map(|n| format!("; its replacement runs on {n}"))
                .unwrap_or_default()
        ),
    }
}

/// The timeline text of an engine event (detection, decision, recovery).
fn event_line(event: &Event, clock: &str, style: &Style) -> String {
    match event {
        Event::Detected {
            node,
            policy,
            trigger,
            victim,
            ..
        } => format!(
            "{}  {}  {node}: {policy}/{trigger}{}",
            clock,
            style.paint("33", "DETECT  "),
            victim
                .as_deref()
                .map(|v| format!(" on {v}"))
                .unwrap_or_default()
        ),
        Event::Decision(d) => decision_lines(d, clock, style),
        Event::Unexplained(u) => format!(
            "{}  {}  {}: {}/{}: nobody blamed: {}",
            clock,
            style.paint("36", "NOBODY  "),
            u.node,
            u.policy,
            u.trigger,
            u.reason
        ),
        Event::Recovered {
            node,
            policy,
            lasted_ms,
            ..
        } => format!(
            "{}  {}  {node}: {policy} clear again after {}s",
            clock,
            style.paint("32", "RECOVER "),
            lasted_ms / 1000
        ),
    }
}

/// A decision: outcome, action and target, then its reason and top three scores.
fn decision_lines(d: &Decision, clock: &str, style: &Style) -> String {
    let scores: Vec<String> = d
        .explanation
        .scores
        .iter()
        .take(3)
        .map(|c| {
            format!(
                "{} {}",
                c.pod,
                c.score.map_or("-".into(), |s| format!("{s:.2}"))
            )
        })
        .collect();
    let (label, code) = match d.outcome {
        Outcome::Executed => ("DECIDE  ", "1;31"),
        Outcome::DryRun => ("DRY-RUN ", "36"),
        Outcome::Blocked => ("BLOCKED ", "35"),
    };
    format!(
        "{}  {}  {}: {:?} {} ({})\n{:27}{}\n{:27}scores ({}): {}",
        clock,
        style.paint(code, label),
        d.node,
        d.action,
        d.target,
        d.policy,
        "",
        d.reason,
        "",
        d.explanation.method,
        scores.join(", ")
    )
}

/// The with/without summary after the timeline.
fn write_summary(out: &mut String, run: &DemoRun, t0: i64) {
    let s = summary(run);
    let with = run.violation_with_s;
    let without = run.violation_without_s;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Summary ({} nodes, {} s of event time from {}, seed {}):",
        s["scale"]["nodes"],
        s["scale"]["event_seconds"],
        rfc3339(t0),
        run.config.seed
    );
    let _ = writeln!(
        out,
        "  SLO-violation seconds of online pods: {:.0} with Fulcrum, {:.0} without ({:.0}% less)",
        with,
        without,
        if without > 0.0 {
            100.0 * (1.0 - with / without)
        } else {
            0.0
        }
    );
    let _ = writeln!(
        out,
        "  actions: {} migrated, {} evicted, {} blocked, {} dry-run",
        s["actions"]["migrated"],
        s["actions"]["evicted"],
        s["actions"]["blocked"],
        s["actions"]["dry_run"]
    );
    write_incidents(out, run);
    let _ = writeln!(
        out,
        "  {} samples through the embedded Kafka in {:.1} s",
        run.samples, run.wall_s
    );
}

/// One summary line per incident: mitigated after how long, or not.
fn write_incidents(out: &mut String, run: &DemoRun) {
    for (i, t) in run.incidents.iter().zip(&run.time_to_mitigate_s) {
        let _ = writeln!(
            out,
            "  {} ({} on {}): {}",
            i.antagonist,
            i.resource,
            i.node,
            t.map_or("not mitigated".to_owned(), |t| format!(
                "mitigated {t:.0} s after onset"
            ))
        );
    }
}

/// Draws worst online p99 (as a fraction of its SLO) over time, with and without Fulcrum,
/// with a marker at every action, as SVG.
pub fn render_svg(run: &DemoRun) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let t0 = run.worst.first().map_or(0, |w| w.0);
        let minutes = |at: i64| (at - t0) as f64 / 60_000.0;
        let x_max = run.worst.last().map_or(1.0, |w| minutes(w.0)).max(1.0);
        let y_max = run
            .worst
            .iter()
            .map(|w| w.1.max(w.2))
            .fold(1.5, f64::max)
            .min(6.0);
        let mut chart = ChartBuilder::on(&root)
            .caption("Worst online p99 latency / SLO", ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("minutes of event time")
            .y_desc("p99 / SLO")
            .draw()
            .map_err(|e| e.to_string())?;
        let without = RGBColor(200, 60, 60);
        let with = RGBColor(30, 110, 200);
        chart
            .draw_series(LineSeries::new(
                run.worst.iter().map(|w| (minutes(w.0), w.2.min(y_max))),
                &without,
            ))
            .map_err(|e| e.to_string())?
            .label("without Fulcrum")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], without));
        chart
            .draw_series(LineSeries::new(
                run.worst.iter().map(|w| (minutes(w.0), w.1.min(y_max))),
                with.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("with Fulcrum")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], with));
        chart
            .draw_series(LineSeries::new([(0.0, 1.0), (x_max, 1.0)], BLACK.mix(0.5)))
            .map_err(|e| e.to_string())?
            .label("SLO")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
        let actions: Vec<(f64, f64)> = run
            .timeline
            .iter()
            .filter(|(_, h)| matches!(h, Happening::Carried { .. }))
            .map(|(at, _)| (minutes(*at), 0.08 * y_max))
            .collect();
        chart
            .draw_series(
                actions
                    .iter()
                    .map(|&p| TriangleMarker::new(p, 9, GREEN.filled())),
            )
            .map_err(|e| e.to_string())?
            .label("action")
            .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, GREEN.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The SVG chart in a small standalone HTML page with the summary.
pub fn render_html(run: &DemoRun) -> Result<String, String> {
    let svg = render_svg(run)?;
    let summary = serde_json::to_string_pretty(&summary(run)).unwrap_or_default();
    Ok(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Fulcrum demo</title></head>\n<body style=\"font-family: sans-serif\">\n<h1>Fulcrum demo</h1>\n{svg}\n<h2>Summary</h2>\n<pre>{}</pre>\n</body></html>\n",
        summary.replace('&', "&amp;").replace('<', "&lt;")
    ))
}
