//! Renderings of a sealed plan for people and tools: text, DOT, Mermaid and a markdown
//! change-board runbook. JSON is in `crate::json`, as it is a contract.

mod dot;
mod markdown;
mod text;

pub use dot::{to_dot, to_mermaid};
pub use markdown::to_markdown;
pub use text::to_text;
