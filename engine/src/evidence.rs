//! One attribution metric's evidence for one pod, as attribution computes it: the numbers
//! and, when the metric does not count, why, as a compact value. The text of the reason
//! and the metric's name are rendered only when an explanation is built (most
//! evaluations emit no decision), into the [`MetricScore`] of the decision.

use fulcrum_policies::MetricId;

use crate::decision::{CommonMode, MetricScore};

/// Why a metric did not count, with the numbers its text shows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Ignored {
    /// A fixed reason.
    Text(&'static str),
    /// The correlation is below `minCorrelation`.
    BelowMinCorrelation { r: f64, min_r: f64 },
    /// The correlation is not significant at the level.
    NotSignificant { p: f64, n_eff: f64, level: f64 },
    /// The correlation does not beat the placebo's.
    CommonMode {
        r: f64,
        common_mode: CommonMode,
        level: f64,
    },
    /// The pod stepped up at the onset as pods of its kind on other nodes did.
    OnsetCommonMode { z: f64, pods: usize, median: f64 },
    /// Too few shared points.
    FewPoints(usize),
    /// The pod's usage is too flat.
    Flat(f64),
    /// The pod's share of the node's usage is too small.
    SmallShare { share: f64, min_share: f64 },
}

impl Ignored {
    /// The reason's text, as explanations show it.
    pub(crate) fn render(&self) -> String {
        match *self {
            Self::Text(text) => text.to_owned(),
            Self::BelowMinCorrelation { r, min_r } => {
                format!("r = {r:.2} is below minCorrelation {min_r:.2}")
            }
            Self::NotSignificant { p, n_eff, level } => format!(
                "not significant: p = {p:.1e} over {n_eff:.1} effective points, needs <= {level:.1e}"
            ),
            Self::CommonMode {
                r,
                common_mode: cm,
                level,
            } => format!(
                "common mode: r = {r:.2} does not beat the placebo (pods of the same kind on other nodes, {1} of them, follow the victim at r >= {0:.2}; p = {2:.1e}, needs <= {level:.1e})",
                cm.placebo_correlation, cm.placebo_pods, cm.p_value
            ),
            Self::OnsetCommonMode { z, pods, median } => format!(
                "common mode: stepped up {z:.0} sd at the onset, as did pods of the same kind on other nodes ({pods} of them, median step {median:.0} sd)"
            ),
            Self::FewPoints(points) => format!("only {points} shared points"),
            Self::Flat(cv) => format!("usage too flat (variation {cv:.3})"),
            Self::SmallShare { share, min_share } => format!(
                "share of node usage {:.1}% is below {:.0}%",
                share * 100.0,
                min_share * 100.0
            ),
        }
    }
}

/// One attribution metric's contribution for one pod (see [`MetricScore`], which it
/// renders into).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Evidence {
    pub(crate) metric: MetricId,
    pub(crate) correlation: Option<f64>,
    pub(crate) share: Option<f64>,
    pub(crate) points: usize,
    pub(crate) ignored: Option<Ignored>,
    pub(crate) p_value: Option<f64>,
    pub(crate) effective_points: Option<f64>,
    pub(crate) significant: bool,
    pub(crate) onset_step: Option<f64>,
    pub(crate) common_mode: Option<CommonMode>,
}

impl Evidence {
    /// As a decision shows it, with the metric's name.
    pub(crate) fn render(&self, metric: &str) -> MetricScore {
        MetricScore {
            metric: metric.to_owned(),
            correlation: self.correlation,
            share: self.share,
            points: self.points,
            ignored: self.ignored.as_ref().map(Ignored::render),
            p_value: self.p_value,
            effective_points: self.effective_points,
            significant: self.significant,
            onset_step: self.onset_step,
            common_mode: self.common_mode,
        }
    }
}
