//! Tests of the command line: flags reach the options they name.

use super::*;

fn run_args(extra: &[&str]) -> RunArgs {
    let mut argv = vec!["fulcrum", "run", "--brokers", "localhost:9092"];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).expect("parses").command {
        Command::Run(args) => args,
        _ => unreachable!("parsed as run"),
    }
}

/// Operator mode once ignored `--input-format`, `--metrics-map` and `--max-skew`:
/// both modes now read the feed options from here.
#[test]
fn every_feed_flag_reaches_the_feed_options() {
    let args = run_args(&["--input-format", "prometheus-json", "--max-skew", "90s"]);
    let settings = args.kafka.settings().expect("brokers given");
    let options = args.feed_options(settings).expect("valid options");
    assert_eq!(
        options.input.format,
        fulcrum::inputs::InputFormat::PrometheusJson
    );
    assert_eq!(options.max_skew_ms, 90_000);
    let defaults = run_args(&[]);
    let settings = defaults.kafka.settings().expect("brokers given");
    let options = defaults.feed_options(settings).expect("valid options");
    assert_eq!(options.input.format, fulcrum::inputs::InputFormat::Native);
    assert_eq!(options.max_skew_ms, 300_000);
}
