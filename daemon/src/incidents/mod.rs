//! The incident lifecycle after the report: steps, deadlines and the centre's figures.
//!
//! - [`lifecycle`] (pure): which steps are allowed and what each one records;
//! - [`desk`]: every change to a stored incident, serialised per incident and durable
//!   before it is answered;
//! - [`dispatch`]: an alert's work sent to a department with a deadline (its linked
//!   incident stepped on, or a work order made for it);
//! - [`supervision`]: the task that marks incidents past their deadline overdue and raises
//!   a supervision alert for each;
//! - [`stats`] and [`days`]: the daily figures (closure and handling rates, times to
//!   accept and dispatch, overdue, alerts, reporters against their quota) in the centre's
//!   time zone.
//!
//! Reports themselves enter through the correlator (`api::grpc::incidents`), which stores
//! the incident with its first step; everything after goes through the [`Desk`].

pub mod days;
pub mod desk;
pub mod dispatch;
pub mod hours;
pub mod lifecycle;
pub mod stats;
pub mod supervision;

pub use desk::{Desk, DeskError};
pub use dispatch::AlertDispatch;
pub use lifecycle::{LifecycleError, StepRequest};
pub use stats::{Figures, StatsError};
pub use supervision::Supervision;
