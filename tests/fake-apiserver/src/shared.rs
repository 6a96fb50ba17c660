//! The state shared by the HTTP handlers, the watch streams and the library API: one mutex,
//! a change counter to wake waiters, and the runtime the server's timers run on.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::store::{Config, State};

/// Shared server state.
pub struct Shared {
    state: Mutex<State>,
    /// Bumped on every change (objects, requests, faults, watches); waiters subscribe.
    pub changed: watch::Sender<u64>,
    /// Behaviour knobs.
    pub config: Config,
    /// The server's runtime (timers for delayed pod removal).
    pub runtime: tokio::runtime::Handle,
}

impl Shared {
    /// New shared state.
    pub fn new(config: Config, runtime: tokio::runtime::Handle) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::new()),
            changed: watch::channel(0).0,
            config,
            runtime,
        })
    }

    /// Locks the state (a poisoned lock is recovered: the state stays usable for assertions).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Wakes everyone waiting for a change.
    pub fn notify(&self) {
        self.changed.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Mutates the state, then lets the controllers react (PDB status, replacements,
    /// scheduling), wakes waiters and starts timers for delayed pod removals.
    pub fn write<R>(self: &Arc<Self>, f: impl FnOnce(&mut State) -> R) -> R {
        let (result, later) = {
            let mut st = self.lock();
            let result = f(&mut st);
            let later = settle(&mut st, &self.config);
            (result, later)
        };
        self.notify();
        spawn_removals(self, later);
        result
    }
}

/// Starts timers that finish delayed pod terminations.
fn spawn_removals(shared: &Arc<Shared>, later: Vec<Removal>) {
    for (key, uid, delay) in later {
        let shared = Arc::clone(shared);
        let runtime = shared.runtime.clone();
        runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            let later = {
                let mut st = shared.lock();
                crate::controller::finish_termination(&mut st, &key, &uid);
                settle(&mut st, &shared.config)
            };
            shared.notify();
            spawn_removals(&shared, later);
        });
    }
}

type Removal = (crate::store::Key, String, std::time::Duration);

/// Lets the controllers react and finishes zero-delay terminations; returns the delayed ones.
fn settle(st: &mut State, config: &Config) -> Vec<Removal> {
    let mut later = Vec::new();
    for _ in 0..16 {
        crate::controller::reconcile(st, config);
        let deferred = std::mem::take(&mut st.deferred_removals);
        if deferred.is_empty() {
            break;
        }
        for (key, uid, delay) in deferred {
            if delay.is_zero() {
                crate::controller::finish_termination(st, &key, &uid);
            } else {
                later.push((key, uid, delay));
            }
        }
    }
    later
}
