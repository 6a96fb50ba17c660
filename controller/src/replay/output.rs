//! Rendering a replay: a readable timeline, or the JSON object of the replay contract
//! `{"decisions":[...],"summary":{...}}`.

use std::fmt::Write;

use serde_json::{Value, json};

use fulcrum_engine::decision::Outcome;
use fulcrum_engine::{Decision, Event};

use super::ReplayReport;
use crate::render::{Style, fmt_ms, rfc3339};

/// The summary object: sample accounting, detections and decisions by outcome and kind.
pub fn summary_json(report: &ReplayReport) -> Value {
    let stats = report.engine.stats();
    let (mut evicted, mut migrated) = (0u64, 0u64);
    for d in report.decisions() {
        if d.outcome == Outcome::Executed {
            match d.action {
                fulcrum_policies::spec::Action::Evict => evicted += 1,
                fulcrum_policies::spec::Action::Migrate => migrated += 1,
            }
        }
    }
    let policies: serde_json::Map<String, Value> = report
        .engine
        .policies()
        .map(|(p, s)| (p.name.clone(), json!(s)))
        .collect();
    json!({
        "lines": report.lines,
        "rejected": report.line_errors.len(),
        "samples": {
            "offered": stats.offered,
            "applied": stats.applied,
            "late": stats.late,
            "duplicates": stats.duplicates,
            "unknown_node": stats.unknown_node,
            "unknown_pod": stats.unknown_pod,
            "irrelevant": stats.irrelevant,
            "too_far_ahead": stats.too_far_ahead,
            "forgotten": stats.forgotten,
            "pending": report.engine.buffered() + report.engine.held(),
        },
        "detections": stats.detections,
        "recoveries": stats.recoveries,
        "unattributed": stats.unattributed,
        "unexplained": stats.unexplained,
        "unexplained_by_cause": stats.unexplained_by_cause,
        "actions": {
            "evicted": evicted,
            "migrated": migrated,
            "blocked": stats.blocked,
            "dry_run": stats.dry_run,
        },
        "policies": policies,
        "invalid_policies": report.invalid_policies.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "input": report.input,
        "cluster_problems": &report.cluster_problems,
        "sorted": report.sorted.as_ref().map(|d| json!({
            "first_line_out_of_order": d.line,
            "back_in_time_ms": d.newest_ms - d.ts_ms,
        })),
    })
}

/// The JSON object of the replay contract.
pub fn render_json(report: &ReplayReport) -> Value {
    let decisions: Vec<&Decision> = report.decisions().collect();
    let unexplained: Vec<&Event> = report
        .events
        .iter()
        .filter(|e| matches!(e, Event::Unexplained(_)))
        .collect();
    json!({
        "decisions": decisions,
        "unexplained": unexplained,
        "summary": summary_json(report),
    })
}

/// One event as a single readable line (for streaming output).
pub fn event_line(event: &Event) -> String {
    match event {
        Event::Detected {
            at,
            policy,
            node,
            trigger,
            victim,
            episode,
        } => format!(
            "{}  DETECT    {node}  {policy}: {trigger} fired{} (episode {episode})",
            rfc3339(*at),
            victim
                .as_deref()
                .map(|v| format!(" on {v}"))
                .unwrap_or_default()
        ),
        Event::Decision(d) => {
            let (label, _) = decision_label(d);
            format!("{}  {}", decision_head(d, &format!("{label:<8}")), d.reason)
        }
        Event::Unexplained(u) => format!(
            "{}  NOBODY    {}  {}: {} (episode {}): nobody blamed ({}): {}",
            rfc3339(u.at),
            u.node,
            u.policy,
            u.trigger,
            u.episode,
            u.cause,
            u.reason
        ),
        Event::Recovered {
            at,
            policy,
            node,
            episode,
            lasted_ms,
        } => format!(
            "{}  RECOVER   {node}  {policy}: clear again after {} (episode {episode})",
            rfc3339(*at),
            fmt_ms(*lasted_ms as u64)
        ),
    }
}

/// A readable timeline of detections, decisions and recoveries, then a summary.
pub fn render_text(report: &ReplayReport, color: bool) -> String {
    let style = Style { color };
    let mut out = String::new();
    for event in &report.events {
        match event {
            Event::Decision(d) => write_decision(&mut out, d, &style),
            other => {
                let line = event_line(other);
                // Colour the label only; the rest of the line stays plain.
                let (head, tail) = line.split_at(line.find("  ").map_or(0, |i| i + 2));
                let (label, rest) = tail.split_at(tail.find(' ').unwrap_or(0));
                let code = if matches!(other, Event::Detected { .. }) {
                    "33"
                } else {
                    "32"
                };
                let _ = writeln!(out, "{head}{}{rest}", style.paint(code, label));
            }
        }
    }
    if report.events.is_empty() {
        out.push_str("no interference detected\n");
    }
    let s = summary_json(report);
    let _ = writeln!(
        out,
        "\nsummary: {} lines ({} rejected), {} samples offered: {} applied, {} late, {} duplicates, {} for unknown nodes/pods, {} irrelevant, {} too far ahead, {} forgotten",
        s["lines"],
        s["rejected"],
        s["samples"]["offered"],
        s["samples"]["applied"],
        s["samples"]["late"],
        s["samples"]["duplicates"],
        s["samples"]["unknown_node"].as_u64().unwrap_or(0)
            + s["samples"]["unknown_pod"].as_u64().unwrap_or(0),
        s["samples"]["irrelevant"],
        s["samples"]["too_far_ahead"],
        s["samples"]["forgotten"],
    );
    let pending = s["samples"]["pending"].as_u64().unwrap_or(0);
    if pending > 0 {
        // Only a replay that stops early leaves samples waiting.
        let _ = writeln!(out, "         {pending} samples still waiting");
    }
    let _ = writeln!(
        out,
        "         {} detections, {} recoveries; actions: {} evicted, {} migrated, {} dry-run, {} blocked",
        s["detections"],
        s["recoveries"],
        s["actions"]["evicted"],
        s["actions"]["migrated"],
        s["actions"]["dry_run"],
        s["actions"]["blocked"],
    );
    out
}

/// The label and colour of a decision's outcome.
fn decision_label(d: &Decision) -> (String, &'static str) {
    match d.outcome {
        Outcome::Executed => (format!("{:?}", d.action).to_uppercase(), "1;31"),
        Outcome::DryRun => ("DRY-RUN".to_owned(), "36"),
        Outcome::Blocked => ("BLOCKED".to_owned(), "35"),
    }
}

/// The first line of a decision: time, label, node, policy, action, target, destination.
fn decision_head(d: &Decision, label: &str) -> String {
    format!(
        "{}  {label}  {}  {}: {:?} {}{} [{:?}]",
        rfc3339(d.at),
        d.node,
        d.policy,
        d.action,
        d.target,
        d.destination
            .as_deref()
            .map(|n| format!(" -> {n}"))
            .unwrap_or_default(),
        d.outcome,
    )
}

fn write_decision(out: &mut String, d: &Decision, style: &Style) {
    let (label, code) = decision_label(d);
    let _ = writeln!(
        out,
        "{}",
        decision_head(d, &style.paint(code, &format!("{label:<8}")))
    );
    let indent = " ".repeat(26);
    let _ = writeln!(out, "{indent}why: {}", d.reason);
    let scores: Vec<String> = d
        .explanation
        .scores
        .iter()
        .take(4)
        .map(|c| {
            let score = c.score.map_or("-".to_owned(), |s| format!("{s:.2}"));
            match &c.excluded {
                Some(why) => format!("{} {score} ({why})", c.pod),
                None => format!("{} {score}", c.pod),
            }
        })
        .collect();
    if !scores.is_empty() {
        let _ = writeln!(
            out,
            "{indent}scores ({}): {}",
            d.explanation.method,
            scores.join("; ")
        );
    }
    let _ = writeln!(out, "{indent}guard: {}", d.explanation.guard);
}
