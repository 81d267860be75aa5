//! Game days (issue 16): a plan of scenarios (experiments) run in order through the controller, with pauses,
//! notes added while it runs, and a blameless review at the end.
//!
//! - [`plan`]: the plan file (`kind: GameDay`), read at file:line:column with its experiments checked.
//! - [`review`]: the review's data ([`review::Review`]: the game day, each scenario's run journal and
//!   incidents) and its Markdown and self-contained HTML renderings.
//!
//! The controller runs game days in `server::gameday` and stores them with `store::GameDayStore`.

pub mod plan;
pub mod review;
