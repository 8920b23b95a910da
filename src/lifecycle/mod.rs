//! What happens to a case after it opened: the status moves departments and the center
//! make, the citizen's satisfaction, the SLA clock, and the notices each move sends back
//! to every source of the case.

pub mod machine;
pub mod notify;
pub mod status_router;

pub use machine::{
    Alert, AlertKind, Departments, Effects, Feedback, HistoryEntry, Lifecycle, Notice, Phase,
    Refusal, Source, StatusEvent, Timing, CENTER, TRIAGE,
};
pub use notify::{callbacks, OutboxCallback};
