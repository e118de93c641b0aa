//! `bridle policy replay`: re-decide recorded events against a draft policy
//! set and report what would change — shadow mode for a whole policy set.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::authorizer::Authorizer;
use crate::decision::{Decision, Effect};
use crate::event::Event;
use crate::request::{AuthzRequest, Principal};

/// What replaying a log found.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Decision records replayed.
    pub decisions: usize,
    /// Of those, how many would get another effect.
    pub changed: usize,
    /// Lines that were not decision records (reloads, notices) or not JSON.
    pub skipped: usize,
    /// (action, recorded effect, draft effect) → count, changed or not.
    pub transitions: BTreeMap<String, BTreeMap<String, usize>>,
    /// The first changed records, for a person to look at.
    pub examples: Vec<Change>,
}

/// One record whose effect would change.
#[derive(Debug, Serialize)]
pub struct Change {
    pub seq: u64,
    pub action: String,
    pub resource: String,
    pub from: Effect,
    pub to: Effect,
    pub policies: Vec<String>,
    pub reason: Option<String>,
}

/// Why a log could not be replayed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error("cannot read audit log {}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

#[derive(Deserialize)]
struct DecisionRecord {
    seq: u64,
    #[serde(rename = "type")]
    kind: String,
    event: Option<Event>,
    decision: Option<Decision>,
}

/// Replays every decision record of `log` against `draft`.
pub fn replay(log: &Path, draft: &Authorizer, max_examples: usize) -> Result<ReplayReport, ReplayError> {
    let io = |source| ReplayError::Io { path: log.to_path_buf(), source };
    let reader = BufReader::new(std::fs::File::open(log).map_err(io)?);
    let mut report = ReplayReport::default();
    for line in reader.lines() {
        let line = line.map_err(io)?;
        match serde_json::from_str::<DecisionRecord>(&line) {
            Ok(DecisionRecord { seq, kind, event: Some(event), decision: Some(recorded) }) if kind == "decision" => {
                if recorded.decided {
                    report.add(seq, &event, &recorded, &draft.decide(&event), max_examples);
                } else {
                    report.skipped += 1;
                }
            }
            _ => report.skipped += 1,
        }
    }
    Ok(report)
}

impl ReplayReport {
    fn add(&mut self, seq: u64, event: &Event, recorded: &Decision, now: &Decision, max_examples: usize) {
        self.decisions += 1;
        let requests = requests_of(event);
        let action = requests.first().map_or_else(|| event.kind_name().to_string(), |r| r.action.cedar_name());
        let transition = format!("{} -> {}", recorded.effect, now.effect);
        *self.transitions.entry(action.clone()).or_default().entry(transition).or_default() += 1;
        if recorded.effect == now.effect {
            return;
        }
        self.changed += 1;
        if self.examples.len() < max_examples {
            let resource = requests.iter().map(|r| r.resource.display()).collect::<Vec<_>>().join(" + ");
            self.examples.push(Change {
                seq,
                action,
                resource,
                from: recorded.effect,
                to: now.effect,
                policies: now.policies.clone(),
                reason: now.reason.clone(),
            });
        }
    }
}

fn requests_of(event: &Event) -> Vec<AuthzRequest> {
    let principal = Principal { name: event.principal.clone(), ..Principal::default() };
    AuthzRequest::from_event(event, &principal)
}

#[cfg(test)]
mod tests;
