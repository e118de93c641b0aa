//! What the engine answers for an event.

use serde::{Deserialize, Serialize};

/// The outcome a capture point enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// Let it happen.
    Allow,
    /// Let it happen, but a `@shadow` policy would have denied it.
    ShadowDeny,
    /// Hold it until a person approves (only `@ask` policies denied it).
    Ask,
    /// Refuse it.
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::ShadowDeny => "shadow-deny",
            Effect::Ask => "ask",
            Effect::Deny => "deny",
        }
    }

    /// Parses `allow`, `deny`, `ask`, `shadow-deny` (also `shadow_deny`).
    pub fn parse(text: &str) -> Option<Effect> {
        match text.trim().to_ascii_lowercase().as_str() {
            "allow" => Some(Effect::Allow),
            "deny" => Some(Effect::Deny),
            "ask" => Some(Effect::Ask),
            "shadow-deny" | "shadow_deny" | "shadowdeny" => Some(Effect::ShadowDeny),
            _ => None,
        }
    }

    /// Whether the capture point lets the action proceed without a person.
    pub fn permits(self) -> bool {
        matches!(self, Effect::Allow | Effect::ShadowDeny)
    }
}

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine's answer for one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub effect: Effect,
    /// `@id`s of the policies that determined the effect (empty for the
    /// default deny and for observations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// The `@reason` shown to the agent and in the console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Policy-set generation that made this decision, so long-lived
    /// connections can be re-checked when it changes.
    pub generation: u64,
    /// Policies that failed to evaluate (Cedar skips them); kept for diagnosis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// False for telemetry events no policy applies to.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub decided: bool,
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

impl Decision {
    /// The non-decision recorded for telemetry (process exit, MCP responses…).
    pub fn observation(generation: u64) -> Self {
        Decision {
            effect: Effect::Allow,
            policies: Vec::new(),
            reason: None,
            generation,
            errors: Vec::new(),
            decided: false,
        }
    }

    /// Combines the decisions of the several requests one event makes
    /// (a rename is a Delete and a Create): the most restrictive wins.
    pub fn combine(mut self, other: Decision) -> Decision {
        if other.effect > self.effect {
            let mut errors = std::mem::take(&mut self.errors);
            let mut winner = other;
            errors.append(&mut winner.errors);
            winner.errors = errors;
            return winner;
        }
        self.errors.extend(other.errors);
        self
    }
}
