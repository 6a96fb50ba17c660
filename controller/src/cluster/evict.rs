//! The operator's actuator: the Eviction API (`POST pods/{name}/eviction`, policy/v1),
//! with the policy's grace period and the pod's UID as a precondition, and for Migrate the
//! steering taint on the source node first.
//!
//! The body is built here, not with `kube::Api::evict`: kube 5 serialises
//! `EvictParams.delete_options` as a snake_case `delete_options` field, which the API
//! server drops as unknown (the grace period and the UID precondition would silently not
//! apply). The client given to this actuator must have kube's default retry layer off
//! (`Config::default_retry = false`): it retries 429/503/504 up to 15 times, so a
//! PodDisruptionBudget refusal would surface minutes later. The retry policy is owned here:
//!
//! | answer | result |
//! | --- | --- |
//! | 200/201 | done |
//! | 429 (a PodDisruptionBudget) | `Blocked`; the next attempt on the pod waits an exponential backoff; never forced, never a plain delete |
//! | 404, 409 (UID precondition: the pod was replaced) | `Gone` |
//! | 5xx, timeouts, connection errors | retried with bounded exponential backoff, then `Failed` |
//! | other 4xx | `Failed` |

use std::collections::HashMap;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use fulcrum_engine::Decision;
use fulcrum_policies::spec::Action;
use kube::Client;
use serde_json::json;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use super::policies::Facts;
use super::reflect::PodUids;
use super::replacement::Replacements;
use super::steer;
use crate::actuator::{Actuation, ActuationError, Actuator};

/// Retry settings of the actuator.
#[derive(Clone, Copy, Debug)]
pub struct RetrySettings {
    /// Attempts after the first for 5xx, timeouts and connection errors.
    pub max_retries: usize,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
    /// Time limit of one API call.
    pub timeout: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_retries: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Carries out decisions on the cluster through the Eviction API.
pub struct KubeActuator {
    client: Client,
    uids: PodUids,
    facts: Facts,
    replacements: Replacements,
    retry: RetrySettings,
    /// Pods refused with 429: not asked again before the instant; the delay doubles.
    blocked: HashMap<String, (Instant, Duration)>,
    observer: Option<Box<dyn Fn(u16, Duration) + Send + Sync>>,
    shutdown: Option<watch::Receiver<bool>>,
}

/// How long an action in progress may still run once shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One attempt's failure.
#[derive(Debug)]
enum Attempt {
    Code(u16, String),
    Transport(String),
}

impl KubeActuator {
    /// An actuator over `client` (which must have kube's default retry off).
    pub fn new(
        client: Client,
        uids: PodUids,
        facts: Facts,
        replacements: Replacements,
        retry: RetrySettings,
    ) -> Self {
        Self {
            client,
            uids,
            facts,
            replacements,
            retry,
            blocked: HashMap::new(),
            observer: None,
            shutdown: None,
        }
    }

    /// Once `shutdown` turns true, an action in progress gets [`SHUTDOWN_GRACE`] to finish,
    /// then it is abandoned (reported Failed; nothing more is sent).
    pub fn abandon_on(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Calls `f` with the HTTP status of every eviction answer (0: no answer) and how long
    /// the call took, for metrics.
    pub fn observe(mut self, f: impl Fn(u16, Duration) + Send + Sync + 'static) -> Self {
        self.observer = Some(Box::new(f));
        self
    }

    async fn post_eviction(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        grace: Option<i64>,
    ) -> Result<(), Attempt> {
        let mut delete_options = json!({"preconditions": {"uid": uid}});
        if let Some(g) = grace {
            delete_options["gracePeriodSeconds"] = json!(g);
        }
        let body = json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": ns},
            "deleteOptions": delete_options,
        });
        let request = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/eviction"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .map_err(|e| Attempt::Transport(e.to_string()))?;
        let call = self.client.request_text(request);
        let started = Instant::now();
        let result = match tokio::time::timeout(self.retry.timeout, call).await {
            Err(_) => Err(Attempt::Transport("timed out".into())),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(kube::Error::Api(s))) => Err(Attempt::Code(s.code, s.message)),
            Ok(Err(e)) => Err(Attempt::Transport(e.to_string())),
        };
        if let Some(observe) = &self.observer {
            let code = match &result {
                Ok(()) => 201,
                Err(Attempt::Code(c, _)) => *c,
                Err(Attempt::Transport(_)) => 0,
            };
            observe(code, started.elapsed());
        }
        result
    }

    async fn evict(&mut self, d: &Decision) -> Result<(), ActuationError> {
        let (ns, name) = d
            .target
            .split_once('/')
            .ok_or_else(|| ActuationError::Gone(d.target.clone()))?;
        let meta = self
            .uids
            .lock()
            .ok()
            .and_then(|u| u.get(&(ns.to_owned(), name.to_owned())).cloned())
            .ok_or_else(|| ActuationError::Gone(d.target.clone()))?;
        let uid = meta.uid;
        if let Some((until, _)) = self.blocked.get(&d.target)
            && Instant::now() < *until
        {
            return Err(ActuationError::Blocked(
                "backing off after a PodDisruptionBudget refusal".into(),
            ));
        }
        let grace = self
            .facts
            .lock()
            .ok()
            .and_then(|f| f.get(&d.policy).and_then(|p| p.grace_period_seconds));
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_max_times(self.retry.max_retries);
        // A replacement is created after this instant (taken before the call: the
        // controller may create it before the answer arrives).
        let started = jiff::Timestamp::now().as_millisecond();
        let this = &*self;
        let result = (|| async { this.post_eviction(ns, name, &uid, grace).await })
            .retry(backoff)
            .when(|e| match e {
                Attempt::Transport(_) => true,
                Attempt::Code(c, _) => *c >= 500,
            })
            .notify(|e, delay| warn!(error = ?e, ?delay, "eviction failed; retrying"))
            .await;
        match result {
            Ok(()) => {
                self.blocked.remove(&d.target);
                if let Some(owner) = meta.owner {
                    self.replacements
                        .expect(&d.policy, &d.target, &d.node, owner, started);
                }
                Ok(())
            }
            Err(Attempt::Code(429, message)) => {
                let delay = self
                    .blocked
                    .get(&d.target)
                    .map_or(Duration::from_secs(1), |(_, d)| {
                        (*d * 2).min(Duration::from_secs(60))
                    });
                self.blocked
                    .insert(d.target.clone(), (Instant::now() + delay, delay));
                Err(ActuationError::Blocked(message))
            }
            Err(Attempt::Code(404 | 409, message)) => Err(ActuationError::Gone(message)),
            Err(Attempt::Code(code, message)) => {
                Err(ActuationError::Failed(format!("HTTP {code}: {message}")))
            }
            Err(Attempt::Transport(message)) => Err(ActuationError::Failed(message)),
        }
    }

    async fn steer(&self, d: &Decision) {
        let cooldown = self
            .facts
            .lock()
            .ok()
            .and_then(|f| f.get(&d.policy).map(|p| p.cooldown_ms))
            .unwrap_or(0);
        let until = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_millis(cooldown as i64))
            .unwrap_or_else(|_| jiff::Timestamp::now());
        // Best effort: the migration still frees the node if the taint cannot be set.
        if let Err(e) = steer::taint(&self.client, &d.node, &d.policy, until).await {
            warn!(error = %e, "could not set the steering taint; evicting without it");
        }
    }
}

impl Actuator for KubeActuator {
    async fn execute(&mut self, decision: &Decision) -> Result<Actuation, ActuationError> {
        let span = info_span!("actuate", policy = %decision.policy, target = %decision.target, action = ?decision.action);
        let mut shutdown = self.shutdown.clone();
        let work = async {
            if decision.action == Action::Migrate {
                self.steer(decision).await;
            }
            self.evict(decision).await?;
            info!(target = %decision.target, "evicted");
            Ok(Actuation::default())
        }
        .instrument(span);
        let abandon = async {
            match shutdown.as_mut() {
                Some(s) => {
                    let _ = s.wait_for(|stop| *stop).await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = work => result,
            () = abandon => {
                warn!(target = %decision.target, "action abandoned at shutdown");
                Err(ActuationError::Failed("abandoned at shutdown".into()))
            }
        }
    }
}
