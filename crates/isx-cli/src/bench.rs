//! `isx bench`: the benchmark of `isx-testkit`, each figure next to a
//! same-run baseline.

use std::path::PathBuf;

use anyhow::Result;
use isx_testkit::bench::{BenchOptions, Phase, Target};

use crate::output;

/// The arguments of `isx bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Short phases (about 30 seconds in all on two cores).
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Concurrent request tasks.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Audit log sizes for the proof and search figures, comma-separated.
    #[arg(long, value_delimiter = ',')]
    log_sizes: Option<Vec<u64>>,
    /// Offered publish rate for the end-to-end latency figures, per second.
    #[arg(long)]
    rate: Option<u64>,
    /// Alerts queued for an offline node before reading resident memory
    /// (100000 in the full run, for `rss_mb_100k_queued`).
    #[arg(long)]
    queued: Option<u64>,
    /// Run only these phases, comma-separated: memory, baseline, publish,
    /// lookup, latency, policy, audit, witness, amend (they run in this
    /// order). The baseline always runs with publish or lookup; witness runs
    /// publish and latency again without and with two witnesses; amend times
    /// an amendment's fan-out until every holder confirmed (in process only).
    #[arg(long, value_delimiter = ',', value_name = "PHASES")]
    only: Option<Vec<Phase>>,
    /// Measure a gateway already running at host:port (e.g. one started by
    /// `isx up`) instead of starting one. It must know the deploy/local
    /// agencies, whose certificates are in --pki; its own agencies receive
    /// the publishes. The memory phase is skipped.
    #[arg(long, value_name = "ADDR", requires = "pki")]
    gateway: Option<String>,
    /// The PKI directory of the running deployment (with --gateway).
    #[arg(long, value_name = "DIR", requires = "gateway")]
    pki: Option<PathBuf>,
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> Result<()> {
    let mut options = if args.quick { BenchOptions::quick() } else { BenchOptions::full() };
    if let Some(c) = args.concurrency {
        options.concurrency = c.max(1);
    }
    if let Some(sizes) = args.log_sizes {
        options.log_sizes = sizes;
    }
    if let Some(r) = args.rate {
        options.rate = r.max(1);
    }
    if let Some(q) = args.queued {
        options.queued = q;
    }
    if let Some(only) = args.only {
        options.phases = only;
    }
    if let (Some(addr), Some(pki_dir)) = (args.gateway, args.pki) {
        options.target = Target::Remote { addr, pki_dir };
    }
    let report = isx_testkit::bench::run(&options, &|step| eprintln!("bench: {step} ...")).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        output::print_bench(&report);
    }
    Ok(())
}
