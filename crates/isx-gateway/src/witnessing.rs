//! Witnessed checkpoints: the gateway offers each checkpoint it signs to
//! the witnesses of its policy (C2SP `tlog-witness` `add-checkpoint`) and
//! publishes it once their cosignatures meet the quorum.
//!
//! - **Per witness**, it remembers the size that witness last cosigned. The
//!   first call guesses the checkpoint's own size; a witness that has seen
//!   another size answers 409 with it, and the gateway asks again once with
//!   a consistency proof from that size. A size above the local log is a
//!   rollback; a 422 says the log is not an extension of what the witness
//!   cosigned (a fork). Both are logged as errors and reported.
//! - **At start** ([`Witnesses::startup`]) the current checkpoint is offered
//!   to every witness. When the witnesses that report a rollback or a fork
//!   make a quorum, the start is refused, naming each witness, the size it
//!   has cosigned and the local size. When none answers, the gateway starts
//!   and warns (or refuses, with `witness.require_at_start`).
//! - **Sharing never waits for witnesses**: "no log, no share" is about the
//!   log. A round is bounded by `witness.timeout`; checkpoints then lag, and
//!   the age of the newest witnessed one is in health, the log and the
//!   `Checkpoint` message.

use std::path::Path;
use std::sync::{Arc, Mutex};

use isx_audit::AuditLog;
use isx_audit::policy::{PolicyError, WitnessPolicy};
use isx_witness::client::{AddError, Client};
use signed_note::Note;
use tracing::{debug, error, info, warn};

use crate::config::WitnessConfig;

/// Why the witnesses are not usable, or refuse the start.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The policy file is not usable.
    #[error("witness.policy: {0}")]
    Policy(#[from] PolicyError),
    /// The policy does not list this gateway's log key.
    #[error(
        "witness.policy {path}: no `log` line holds this gateway's audit key {key} (add `log <the contents of audit.pub>`)"
    )]
    NotOurLog {
        /// The policy file.
        path: String,
        /// The gateway's verifier key.
        key: String,
    },
    /// A witness has no URL.
    #[error("witness.policy: witness {0} has no URL (write `witness NAME VKEY https://HOST:PORT`)")]
    NoUrl(String),
    /// The HTTPS client could not be built.
    #[error("witness client: {0}")]
    Client(String),
    /// A quorum of witnesses has seen more, or another log.
    #[error(
        "start refused: the local audit log (size {local}) is a rollback or a fork of what the witnesses cosigned: {details}. Restore the data directory that holds the log they witnessed; do not start this one"
    )]
    Rollback {
        /// The local log's size.
        local: u64,
        /// Per witness: its name, size and answer.
        details: String,
    },
    /// No witness answered and `witness.require_at_start` is set.
    #[error(
        "start refused: no witness answered the start-up check ({details}) and witness.require_at_start is true; start the witnesses, or set it to false to start unwitnessed"
    )]
    NoneAnswered {
        /// Per witness, why.
        details: String,
    },
}

/// One witness's state, as health and the console show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WitnessStatus {
    /// Its name in the policy.
    pub name: String,
    /// Its submission prefix.
    pub url: String,
    /// The size it last cosigned for this gateway, if known.
    pub cosigned_size: Option<u64>,
    /// The last failure, if the last call failed.
    pub last_error: Option<String>,
}

/// What one witness said about a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// Its cosignature lines, verified.
    Cosigned(String),
    /// It has cosigned a larger tree than the local log.
    Ahead(u64),
    /// The checkpoint does not extend what it cosigned (its words).
    Inconsistent(String),
    /// No usable answer.
    Failed(String),
}

/// The witnesses of the gateway's policy and what it knows of each.
pub struct Witnesses {
    policy: WitnessPolicy,
    urls: Vec<String>,
    client: Client,
    /// Held for a whole round; per witness the size it last cosigned.
    known: tokio::sync::Mutex<Vec<Option<u64>>>,
    status: Mutex<Vec<WitnessStatus>>,
}

impl std::fmt::Debug for Witnesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witnesses").field("quorum", &self.policy.describe_quorum()).finish_non_exhaustive()
    }
}

/// The result of offering one checkpoint.
#[derive(Debug, Clone)]
pub struct Round {
    /// The note with every verified cosignature appended.
    pub note: String,
    /// Who cosigned (policy names).
    pub cosigners: Vec<String>,
    /// Whether they make the quorum.
    pub quorum: bool,
}

impl Witnesses {
    /// Reads `config.policy`, if set: `None` without a policy.
    pub fn load(config: &WitnessConfig, pki_dir: &Path, log_key: &str) -> Result<Option<Self>, WitnessError> {
        let Some(path) = &config.policy else { return Ok(None) };
        let policy = WitnessPolicy::load(path)?;
        if !policy.logs().iter().any(|l| l.vkey == log_key) {
            return Err(WitnessError::NotOurLog { path: path.display().to_string(), key: log_key.to_owned() });
        }
        let urls = policy
            .witnesses()
            .iter()
            .map(|w| w.url.clone().ok_or_else(|| WitnessError::NoUrl(w.name.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let client =
            Client::new(&pki_dir.join("ca.crt"), config.timeout).map_err(|e| WitnessError::Client(e.to_string()))?;
        let status = policy
            .witnesses()
            .iter()
            .zip(&urls)
            .map(|(w, url)| WitnessStatus { name: w.name.clone(), url: url.clone(), ..Default::default() })
            .collect();
        let n = urls.len();
        Ok(Some(Self {
            policy,
            urls,
            client,
            known: tokio::sync::Mutex::new(vec![None; n]),
            status: Mutex::new(status),
        }))
    }

    /// The policy.
    pub fn policy(&self) -> &WitnessPolicy {
        &self.policy
    }

    /// Each witness's state.
    pub fn status(&self) -> Vec<WitnessStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records witness `i`'s answer; true if its state changed (it failed
    /// after answering, or failed otherwise than the last time).
    fn note_status(&self, i: usize, answer: &Answer, cosigned: Option<u64>) -> bool {
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let s = &mut all[i];
        let before = s.last_error.clone();
        if let Some(size) = cosigned {
            s.cosigned_size = Some(size);
        }
        s.last_error = match answer {
            Answer::Cosigned(_) => None,
            Answer::Ahead(size) => {
                s.cosigned_size = Some(*size);
                Some(format!("it has cosigned size {size}, more than this log holds"))
            }
            Answer::Inconsistent(m) => Some(format!("refused: {m}")),
            Answer::Failed(m) => Some(m.clone()),
        };
        s.last_error != before
    }

    /// Asks witness `i` to cosign `note` (a checkpoint of `size`), starting
    /// from the size it is believed to have cosigned.
    async fn ask(&self, i: usize, log: &AuditLog, size: u64, note: &str, believed: Option<u64>) -> Answer {
        let url = &self.urls[i];
        let mut old = believed.unwrap_or(size).min(size);
        // At most two calls: the guess, then the size the witness names.
        for _ in 0..2 {
            let proof = if old == 0 || old == size {
                Ok(vec![])
            } else {
                log.consistency_proof(old, size).map_err(|e| e.to_string())
            };
            let proof = match proof {
                Ok(p) => p,
                Err(e) => return Answer::Failed(format!("no consistency proof from size {old}: {e}")),
            };
            match self.client.add_checkpoint(url, old, &proof, note).await {
                Ok(lines) => return self.verify(i, note, &lines),
                Err(AddError::Conflict { size: theirs }) if theirs > size => return Answer::Ahead(theirs),
                Err(AddError::Conflict { size: theirs }) if theirs != old => old = theirs,
                Err(AddError::Conflict { size: theirs }) => {
                    return Answer::Failed(format!("answered 409 with the size it was given ({theirs})"));
                }
                Err(AddError::Refused { status: 422, message }) => return Answer::Inconsistent(message),
                Err(e) => return Answer::Failed(e.to_string()),
            }
        }
        Answer::Failed("the witness named another size twice".into())
    }

    /// Keeps, of the signature lines a witness returned, only its own
    /// valid cosignature of `note`: a line in another key's name (the
    /// log's, say, with a bad signature) would make the published note
    /// fail for every verifier.
    fn verify(&self, i: usize, note: &str, lines: &str) -> Answer {
        let witness = &self.policy.witnesses()[i];
        let mut failure = None;
        for line in lines.lines().filter(|l| l.starts_with('—')) {
            let one = format!("{line}\n");
            let cosigned = Note::from_bytes(format!("{note}{one}").as_bytes())
                .map_err(|e| e.to_string())
                .and_then(|n| witness.cosigned(&n).map_err(|e| e.to_string()));
            match cosigned {
                Ok(Some(_)) => return Answer::Cosigned(one),
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(e) => Answer::Failed(format!("its cosignature does not verify: {e}")),
            None => Answer::Failed("its answer holds no cosignature of its policy key".into()),
        }
    }

    /// Offers `note`, the checkpoint of `size`, to every witness at once.
    async fn offer(self: &Arc<Self>, log: &Arc<AuditLog>, size: u64, note: &str) -> Vec<(Answer, bool)> {
        let mut known = self.known.lock().await;
        let mut tasks = tokio::task::JoinSet::new();
        for (i, believed) in known.iter().copied().enumerate() {
            let (this, log, note) = (self.clone(), log.clone(), note.to_owned());
            tasks.spawn(async move { (i, this.ask(i, &log, size, &note, believed).await) });
        }
        let mut answers = vec![(Answer::Failed("no answer".into()), true); known.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, answer)) = joined {
                let cosigned = matches!(answer, Answer::Cosigned(_)).then_some(size);
                if cosigned.is_some() {
                    known[i] = Some(size);
                }
                let changed = self.note_status(i, &answer, cosigned);
                answers[i] = (answer, changed);
            }
        }
        answers
    }

    /// Offers a checkpoint and gathers the cosignatures.
    pub async fn round(self: &Arc<Self>, log: &Arc<AuditLog>, size: u64, note: &str) -> Round {
        let answers = self.offer(log, size, note).await;
        for (w, (answer, changed)) in self.policy.witnesses().iter().zip(&answers) {
            match answer {
                Answer::Cosigned(_) if *changed => info!(witness = %w.name, size, "witness cosigns again"),
                Answer::Cosigned(_) => {}
                Answer::Ahead(theirs) => error!(
                    witness = %w.name, witness_size = theirs, local_size = size,
                    "a witness has cosigned a larger audit log than this one: a rollback"
                ),
                Answer::Inconsistent(m) => error!(
                    witness = %w.name, local_size = size, reason = %m,
                    "a witness refuses this checkpoint: the log is not an extension of what it cosigned (a fork)"
                ),
                // Once per change, not once a round, while a witness is away.
                Answer::Failed(m) if *changed => warn!(witness = %w.name, error = %m, "witness did not cosign"),
                Answer::Failed(m) => debug!(witness = %w.name, error = %m, "witness did not cosign"),
            }
        }
        let answers: Vec<Answer> = answers.into_iter().map(|(a, _)| a).collect();
        self.merge(note, &answers)
    }

    /// The note with the cosignatures of `answers` appended.
    fn merge(&self, note: &str, answers: &[Answer]) -> Round {
        let mut cosigned = note.to_owned();
        let mut cosigners = Vec::new();
        for (w, answer) in self.policy.witnesses().iter().zip(answers) {
            if let Answer::Cosigned(lines) = answer {
                cosigned.push_str(lines);
                cosigners.push(w.name.clone());
            }
        }
        let quorum = self.policy.satisfied(cosigners.iter().map(String::as_str));
        Round { note: cosigned, cosigners, quorum }
    }

    /// The start-up check: offers the current checkpoint, refuses a
    /// rollback or a fork that a quorum reports, and returns the round.
    pub async fn startup(
        self: &Arc<Self>,
        log: &Arc<AuditLog>,
        size: u64,
        note: &str,
        require_answer: bool,
    ) -> Result<Round, WitnessError> {
        let answers: Vec<Answer> = self.offer(log, size, note).await.into_iter().map(|(a, _)| a).collect();
        let names: Vec<&str> = self.policy.witnesses().iter().map(|w| w.name.as_str()).collect();
        let against: Vec<(&str, String)> = names
            .iter()
            .zip(&answers)
            .filter_map(|(n, a)| match a {
                Answer::Ahead(theirs) => Some((*n, format!("witness {n} has cosigned size {theirs}"))),
                Answer::Inconsistent(m) => {
                    Some((*n, format!("witness {n} refuses size {size} as not an extension of what it cosigned ({m})")))
                }
                _ => None,
            })
            .collect();
        for (_, d) in &against {
            error!("audit log start-up check: {d}; the local log has size {size}");
        }
        if !against.is_empty() && (self.policy.needs_none() || self.policy.satisfied(against.iter().map(|(n, _)| *n))) {
            return Err(WitnessError::Rollback {
                local: size,
                details: against.into_iter().map(|(_, d)| d).collect::<Vec<_>>().join("; "),
            });
        }
        let answered = answers.iter().any(|a| !matches!(a, Answer::Failed(_)));
        if !answered && !names.is_empty() {
            let details = names
                .iter()
                .zip(&answers)
                .map(|(n, a)| match a {
                    Answer::Failed(m) => format!("{n}: {m}"),
                    _ => format!("{n}: answered"),
                })
                .collect::<Vec<_>>()
                .join("; ");
            if require_answer {
                return Err(WitnessError::NoneAnswered { details });
            }
            warn!(
                %details,
                "NO WITNESS ANSWERED the start-up check: a rollback of this audit log would go unseen until one does; \
                 sharing continues, checkpoints stay unwitnessed, and health turns NOT_SERVING after witness.max_age"
            );
        }
        let round = self.merge(note, &answers);
        info!(size, cosigners = ?round.cosigners, quorum = round.quorum, "audit log start-up check against the witnesses");
        Ok(round)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, policy: &str) -> WitnessConfig {
        let path = dir.join("witness.policy");
        std::fs::write(&path, policy).unwrap();
        WitnessConfig { policy: Some(path), ..Default::default() }
    }

    #[test]
    fn the_policy_must_list_this_log_and_a_url_for_every_witness() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path();
        isx_tls::pki::init(&isx_tls::pki::InitOptions::new(pki)).unwrap();
        isx_audit::keys::create(pki, "isx/test/audit").unwrap();
        let ours = isx_audit::keys::load(pki).unwrap().verifier_key;
        let witness = isx_audit::cosignature::CosignatureSigner::new("w", &[1; 32]).unwrap().verifier_key();
        assert!(Witnesses::load(&WitnessConfig::default(), pki, &ours).unwrap().is_none(), "no policy, no witnesses");

        let other = tempfile::tempdir().unwrap();
        isx_audit::keys::create(other.path(), "isx/test/audit").unwrap();
        let theirs = isx_audit::keys::load(other.path()).unwrap().verifier_key;
        let e = Witnesses::load(&config(pki, &format!("log {theirs}\nquorum none\n")), pki, &ours).unwrap_err();
        assert!(matches!(e, WitnessError::NotOurLog { .. }), "{e}");

        let e = Witnesses::load(&config(pki, &format!("log {ours}\nwitness w {witness}\nquorum w\n")), pki, &ours)
            .unwrap_err();
        assert_eq!(e.to_string(), "witness.policy: witness w has no URL (write `witness NAME VKEY https://HOST:PORT`)");

        let e = Witnesses::load(&config(pki, "quorum nobody\n"), pki, &ours).unwrap_err();
        assert!(e.to_string().starts_with("witness.policy: witness policy line 1"), "{e}");

        let ok = Witnesses::load(
            &config(pki, &format!("log {ours}\nwitness w {witness} https://127.0.0.1:1\nquorum w\n")),
            pki,
            &ours,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            ok.status(),
            vec![WitnessStatus { name: "w".into(), url: "https://127.0.0.1:1".into(), ..Default::default() }]
        );
    }

    #[test]
    fn only_the_witnesss_own_valid_cosignature_is_kept_from_its_answer() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path();
        isx_tls::pki::init(&isx_tls::pki::InitOptions::new(pki)).unwrap();
        isx_audit::keys::create(pki, "isx/test/audit").unwrap();
        let keys = isx_audit::keys::load(pki).unwrap();
        let signer = isx_audit::cosignature::CosignatureSigner::new("w", &[1; 32]).unwrap();
        let policy =
            format!("log {}\nwitness w {} https://127.0.0.1:1\nquorum w\n", keys.verifier_key, signer.verifier_key());
        let w = Witnesses::load(&config(pki, &policy), pki, &keys.verifier_key).unwrap().unwrap();
        let note = isx_audit::checkpoint::sign(&keys, 3, [7; 32]);
        let mut cosigned = Note::from_bytes(note.as_bytes()).unwrap();
        cosigned.add_sigs(&[&signer as &dyn signed_note::Signer]).unwrap();
        let text = String::from_utf8(cosigned.to_bytes()).unwrap();
        let good: String = text.lines().filter(|l| l.starts_with("— w ")).map(|l| format!("{l}\n")).collect();
        assert_eq!(good.lines().count(), 1);
        // A line in the log's own name whose signature does not verify: dropped,
        // as it would make the published note fail for every verifier.
        let log_line = note.lines().find(|l| l.starts_with('—')).unwrap();
        let forged = format!("{}AAAA{}\n", &log_line[..log_line.len() - 8], &log_line[log_line.len() - 4..]);
        assert_eq!(w.verify(0, &note, &format!("{forged}{good}")), Answer::Cosigned(good.clone()));
        assert!(matches!(w.verify(0, &note, &forged), Answer::Failed(_)));
        // Another key under the witness's name is no cosignature of it.
        let other = isx_audit::cosignature::CosignatureSigner::new("w", &[2; 32]).unwrap();
        let mut by_other = Note::from_bytes(note.as_bytes()).unwrap();
        by_other.add_sigs(&[&other as &dyn signed_note::Signer]).unwrap();
        let stranger = String::from_utf8(by_other.to_bytes()).unwrap().lines().last().unwrap().to_owned() + "\n";
        assert_eq!(
            w.verify(0, &note, &stranger),
            Answer::Failed("its answer holds no cosignature of its policy key".into())
        );
    }
}
