//! Resolving a sample's node and pod names to ids without hashing them per sample.
//!
//! A message usually holds one node's samples: [`Engine::offer_each`] looks the node up by
//! name once per run of samples naming it, and [`Engine::offer_on`] takes a node id the
//! caller resolved. A pod is first looked for at the position after the previous sample's
//! pod in its node's pod list (one hint for the whole engine: agents report a node's pods
//! in a stable order, one node per message), then by name; when the hint misses, the name
//! lookup is followed by a scan of the node's pod list for the next hint. An id is always
//! checked against the current cluster view before it is used (ids of removed nodes and
//! pods are reused), so an id resolved before a cluster update never misattributes a sample.

use crate::cluster::{NodeId, PodId};
use crate::engine::Engine;
use crate::ingest::Offered;
use crate::sample::{PodRef, Sample};

impl Engine {
    /// The id of the node called `name`, for [`Engine::offer_on`].
    pub fn resolve_node(&self, name: &str) -> Option<NodeId> {
        self.cluster.node_id(name)
    }

    /// Offers a sample taken on `node`, an id the caller resolved from `sample.node` (with
    /// [`Engine::resolve_node`], once for a run of samples of that node): the same as
    /// [`Engine::offer`] without the per-sample lookup by name. When `node` no longer names
    /// `sample.node` (the cluster view changed since it was resolved), the node is looked up
    /// by name again.
    pub fn offer_on(&mut self, node: NodeId, sample: &Sample<'_>) -> Offered {
        let current = self
            .cluster
            .node_info(node)
            .is_some_and(|n| n.name == *sample.node);
        if current {
            self.offer_resolved(Some(node), sample)
        } else {
            self.offer(sample)
        }
    }

    /// Offers `samples` in order, resolving each run of samples naming the same node once,
    /// and calls `each(engine, index, node id, outcome)` after each offer.
    pub fn offer_each(
        &mut self,
        samples: &[Sample<'_>],
        mut each: impl FnMut(&Self, usize, Option<NodeId>, Offered),
    ) {
        let mut last: Option<(&str, Option<NodeId>)> = None;
        for (i, sample) in samples.iter().enumerate() {
            let name: &str = &sample.node;
            let node = match last {
                Some((n, id)) if n == name => id,
                _ => self.cluster.node_id(name),
            };
            last = Some((name, node));
            // Offering changes no cluster view: an id resolved in this loop stays current.
            let offered = self.offer_resolved(node, sample);
            each(self, i, node, offered);
        }
    }

    /// The pod `p` names if it is bound to `node` (with the UID it claims, when both know
    /// one).
    pub(crate) fn resolve_pod(&mut self, node: NodeId, p: &PodRef<'_>) -> Option<PodId> {
        let pods = self.cluster.node_pods(node);
        let at = if (self.pod_hint as usize) < pods.len() {
            self.pod_hint as usize
        } else {
            0
        };
        let named = |id: PodId| {
            self.cluster
                .pod_info(id)
                .is_some_and(|info| info.name == *p.name && info.namespace == *p.namespace)
        };
        let (id, at) = match pods.get(at).copied().filter(|id| named(*id)) {
            Some(id) => (id, at),
            None => {
                let id = self
                    .cluster
                    .pod_id(&p.namespace, &p.name)
                    .filter(|id| self.cluster.pod_node(*id) == Some(node))?;
                (id, pods.iter().position(|q| *q == id).unwrap_or(0))
            }
        };
        let info = self.cluster.pod_info(id)?;
        let uid_ok = p
            .uid
            .as_deref()
            .is_none_or(|uid| info.uid.is_empty() || info.uid == uid);
        if !uid_ok {
            return None;
        }
        // The node's next sample is most likely about its next pod.
        self.pod_hint = u32::try_from(at + 1).unwrap_or(0);
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use crate::cluster::NodeId;
    use crate::tests::{World, node, pod, policy, sample};
    use crate::{Engine, Offered};

    /// The test world with two samples of n2 offered and taken: the engine knows what time
    /// it is, so the next samples are queued, not held (see [`crate::jump`]).
    fn primed() -> Engine {
        let mut engine = World::new(&[policy("")]).engine;
        let t = crate::tests::T0;
        for ts in [t - 2_000, t - 1_000] {
            let agent = Some(("infra", "agent"));
            engine.offer(&sample(ts, "n2", agent, &[("mem_bw", 1.0)]));
        }
        assert_eq!(engine.buffered(), 2);
        while engine.buffer.pop_until(t - 1).is_some() {}
        engine
    }

    /// Takes the queued samples: (node, pod namespace/name) of each.
    fn queued(engine: &mut Engine) -> Vec<(NodeId, Option<String>)> {
        let mut out = Vec::new();
        while let Some(p) = engine.buffer.pop_until(i64::MAX) {
            let pod = p
                .pod
                .and_then(|id| engine.cluster.pod_info(id))
                .map(|i| i.key());
            out.push((p.node, pod));
        }
        out
    }

    #[test]
    fn a_node_id_resolved_before_its_node_was_replaced_never_misattributes() {
        let mut engine = primed();
        let t = crate::tests::T0;
        let n1 = engine.resolve_node("n1").expect("n1 is known");
        // n1 leaves; n3 takes its id; n1 comes back under another id.
        engine.remove_node("n1");
        engine.upsert_node(node("n3"));
        assert_eq!(
            engine.resolve_node("n3"),
            Some(n1),
            "ids of removed nodes are reused"
        );
        engine.upsert_pod(pod("spark", "on-n3", "n3", "batch"));
        let s = sample(t, "n1", Some(("shop", "web")), &[("mem_bw", 1.0)]);
        assert_eq!(engine.offer_on(n1, &s), Offered::UnknownNode);
        engine.upsert_node(node("n1"));
        let again = engine.resolve_node("n1").expect("n1 is back");
        assert_ne!(again, n1);
        assert_eq!(engine.offer_on(n1, &s), Offered::Queued);
        // Control: a sample of n3 offered with the same id is n3's.
        let s3 = sample(t, "n3", Some(("spark", "on-n3")), &[("mem_bw", 1.0)]);
        assert_eq!(engine.offer_on(n1, &s3), Offered::Queued);
        // In (time, node id) order: n3 holds n1's old id.
        let want = [
            (n1, Some("spark/on-n3".to_owned())),
            (again, Some("shop/web".to_owned())),
        ];
        assert_eq!(queued(&mut engine), want);
    }

    #[test]
    fn a_pod_replaced_in_its_slot_is_not_taken_for_the_old_one() {
        let mut engine = primed();
        let t = crate::tests::T0;
        let n1 = engine.resolve_node("n1").expect("n1 is known");
        let web = sample(t, "n1", Some(("shop", "web")), &[("mem_bw", 1.0)]);
        let hog = sample(t + 1, "n1", Some(("spark", "hog")), &[("mem_bw", 1.0)]);
        assert_eq!(engine.offer_on(n1, &web), Offered::Queued);
        // The next pod in n1's list is looked at first: hog; it leaves and another pod
        // takes its id (and its place on n1).
        let hog_id = engine.cluster.pod_id("spark", "hog");
        engine.remove_pod("spark", "hog");
        engine.upsert_pod(pod("spark", "other", "n1", "batch"));
        assert_eq!(engine.cluster.pod_id("spark", "other"), hog_id);
        assert_eq!(engine.offer_on(n1, &hog), Offered::UnknownPod);
        let other = sample(t + 2, "n1", Some(("spark", "other")), &[("mem_bw", 1.0)]);
        assert_eq!(engine.offer_on(n1, &other), Offered::Queued);
        // A pod of another node named in n1's samples is unknown there, found or not.
        let agent = sample(t + 3, "n1", Some(("infra", "agent")), &[("mem_bw", 1.0)]);
        assert_eq!(engine.offer_on(n1, &agent), Offered::UnknownPod);
        let got = queued(&mut engine);
        let want = [
            (n1, Some("shop/web".to_owned())),
            (n1, Some("spark/other".to_owned())),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn offering_a_batch_resolves_as_offering_one_sample_at_a_time() {
        let t = crate::tests::T0;
        let pods = [
            ("shop", "web"),
            ("ai", "train"),
            ("spark", "busy"),
            ("spark", "hog"),
        ];
        let mut samples = Vec::new();
        for (i, p) in pods.iter().enumerate() {
            samples.push(sample(t + i as i64, "n1", Some(*p), &[("mem_bw", 1.0)]));
            samples.push(sample(t + i as i64, "n2", Some(*p), &[("mem_bw", 1.0)]));
            samples.push(sample(t, "gone", Some(*p), &[("mem_bw", 1.0)]));
        }
        samples.push(sample(t, "n2", Some(("infra", "agent")), &[("cpu", 1.0)]));
        let mut batch = primed();
        let mut got = Vec::new();
        batch.offer_each(&samples, |_, _, _, offered| got.push(offered));
        let mut single = primed();
        let want: Vec<Offered> = samples.iter().map(|s| single.offer(s)).collect();
        assert_eq!(got, want);
        assert!(want.contains(&Offered::UnknownPod) && want.contains(&Offered::UnknownNode));
        assert_eq!(queued(&mut batch), queued(&mut single));
        assert_eq!(batch.stats(), single.stats());
    }
}
