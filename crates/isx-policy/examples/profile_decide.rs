//! Where the time of one disclosure decision goes (run with --release).
use std::sync::Arc;
use std::time::Instant;

use isx_core::redaction::RedactionProfile;
use isx_core::wire::{Alert, Labels, Subject};
use isx_core::{NodeId, NodeInfo, NodeKind};
use isx_policy::engine::Action;
use isx_policy::{Disclosure, PolicyEngine};

fn main() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(std::env::var("POL").unwrap_or("../../deploy/local/policy".into()));
    let engine = Arc::new(PolicyEngine::load(&dir).unwrap());
    let d = Disclosure::new(engine.clone(), RedactionProfile::default());
    let nodes: Vec<NodeInfo> =
        [("de-police", NodeKind::National), ("europol", NodeKind::Europol), ("frontex", NodeKind::Frontex)]
            .iter()
            .map(|(id, k)| NodeInfo {
                id: NodeId::new(*id).unwrap(),
                kind: *k,
                country: "EU".into(),
                roles: k.default_roles(),
                name: String::new(),
            })
            .collect();
    let alert = Alert {
        alert_id: "a".into(),
        origin: "it-police".into(),
        category: 3,
        action: 3,
        labels: Some(Labels {
            tlp: 3,
            handling_code: 1,
            source_reliability: 1,
            info_reliability: 1,
            ..Default::default()
        }),
        subjects: vec![Subject { role: 1, family_name: "X".into(), ..Default::default() }],
        ..Default::default()
    };
    let refs: Vec<&NodeInfo> = nodes.iter().collect();
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(isx_policy::facts::alert_facts(&alert, None));
    }
    println!("alert_facts   {:>8.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(d.prepare(&alert, None, &refs));
    }
    println!("prepare       {:>8.1} us (incl. facts)", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let prepared = d.prepare(&alert, None, &refs);
    for node in &nodes {
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(engine.ask(Action::DiscloseFull, &prepared, node, "o", Default::default()));
        }
        println!("ask full {:<10} {:>8.1} us", node.id.as_str(), t.elapsed().as_secs_f64() * 1e6 / n as f64);
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(d.decide(&alert, &prepared, node, Default::default(), "o"));
        }
        println!("decide {:<12} {:>8.1} us", node.id.as_str(), t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
}
