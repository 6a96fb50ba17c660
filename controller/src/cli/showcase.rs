//! `fulcrum demo` and `fulcrum bench`: the commands that run Fulcrum on a generated world
//! and print what happened or how fast it went.

use std::io::{IsTerminal, Write};

use anyhow::Context;

use super::{BenchArgs, DemoArgs, Output, runtime};

/// Runs `fulcrum demo`.
pub(crate) fn demo(args: DemoArgs) -> anyhow::Result<bool> {
    use fulcrum::sim::{DemoConfig, report};
    let config = if args.small {
        DemoConfig::small(args.seed)
    } else {
        DemoConfig::full(args.seed)
    };
    let rt = runtime()?;
    let show_progress = std::io::stderr().is_terminal();
    let run = rt.block_on(fulcrum::sim::run(config, |tick, ticks| {
        if show_progress && (tick % 10 == 0 || tick == ticks) {
            eprint!("\r[demo] simulated {tick}/{ticks} ticks");
            if tick == ticks {
                eprintln!();
            }
        }
    }))?;
    if let Some(path) = &args.report {
        let chart = match path.extension().and_then(|e| e.to_str()) {
            Some("html") | Some("htm") => report::render_html(&run),
            Some("svg") => report::render_svg(&run),
            _ => anyhow::bail!("--report must end in .svg or .html: {}", path.display()),
        }
        .map_err(|e| anyhow::anyhow!("drawing the chart: {e}"))?;
        std::fs::write(path, chart).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            serde_json::to_writer(&mut stdout, &report::render_json(&run))?;
            writeln!(stdout)?;
        }
        Output::Text => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            write!(stdout, "{}", report::render_text(&run, color))?;
            if let Some(path) = &args.report {
                writeln!(stdout, "  chart: {}", path.display())?;
            }
        }
    }
    Ok(true)
}

/// Runs `fulcrum bench`.
pub(crate) fn bench(args: BenchArgs) -> anyhow::Result<bool> {
    let show_progress = std::io::stderr().is_terminal();
    let report = fulcrum::bench::run(args.scale, args.brokers.as_deref(), |step| {
        if show_progress {
            eprintln!("[bench] {step}");
        }
    });
    let mut stdout = std::io::stdout().lock();
    match args.output {
        Output::Json => writeln!(stdout, "{}", report.json())?,
        Output::Text => write!(stdout, "{}", report.text())?,
    }
    Ok(true)
}
