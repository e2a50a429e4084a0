//! Helpers shared by the provider parser and command tests.

use super::{TurnEvent, Usage};

/// A usage event.
pub fn usage(prompt: u64, completion: u64, cached: u64) -> TurnEvent {
    TurnEvent::Usage(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: cached,
    })
}

/// A text event.
pub fn text(t: &str) -> TurnEvent {
    TurnEvent::Text(t.into())
}

/// Owned strings, for comparing argument lists.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}
