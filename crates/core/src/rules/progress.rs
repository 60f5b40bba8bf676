//! The progress of the last flow that worked on a resource, as the views show
//! it (`scoria:progress`, a snapshot's `progress`): the stage `i/N`, the step,
//! the percent a step reported, and the last error.

use scoria_model::flow::{FlowState, Progress};
use scoria_store::flows::FlowRecord;

/// A flow record as the progress a view shows.
pub fn of_flow(f: &FlowRecord) -> Progress {
    Progress {
        operation: f.kind.clone(),
        state: f.state,
        stage: if f.state == FlowState::Done {
            f.steps_total as u32
        } else {
            (f.step_index + 1).min(f.steps_total) as u32
        },
        total: f.steps_total as u32,
        step: f.step_name.clone(),
        percent: f.percent.map(|p| p.clamp(0, 100) as u8),
        last_error: f.last_error.clone(),
    }
}
